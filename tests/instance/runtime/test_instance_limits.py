"""Queries that tried to break an instance (issue 6), through HTTP against a real process.

Each is answered 200 or a 4xx `{error, message}` quickly, and the process (its
one worker, holding the snapshot) is still the same one afterwards.
"""

from __future__ import annotations

import time

import pytest
import requests
from rt_support import N_COMMENTS, Worker

from app.contracts.query_limits import QueryLimits

DEPTH = "line 1, column {}: selections nest more than 10 deep (limit maxSelectionDepth = 10)"
FILTER_DEPTH = ("line 1, column {}: the filter nests more than 16 deep (parentheses and NOT) "
                "(limit maxFilterDepth = 16)")
TERMS = ("line 1, column {}: the filters hold more than 500 terms (each predicate and each IN "
         "value is one) (limit maxFilterTerms = 500)")
SLOW = 'comments(user.comments.user.comments.body LIKE "%zz%") { id }'


def exponential(pairs: int) -> str:
    """Issue 6, defect 1: 22 pairs was a 540-byte query that crashed the instance."""
    return ("posts { " + "author { id posts { " * pairs + "id" + " } }" * pairs + " }")


def limit_exceeded(message: str) -> dict:
    return {"error": "limit_exceeded", "message": message}


class TestDefects:
    """Each case of issue 6, defects 1 and 2, was a crash or a 500."""

    @pytest.mark.parametrize("text, status, body", [
        (exponential(22), 400, limit_exceeded(DEPTH.format(107))),
        ("users(" + "(" * 300 + "id = 1" + ")" * 300 + ") { id }", 400,
         limit_exceeded(FILTER_DEPTH.format(23))),
        ("users(" + "NOT " * 100 + "id = 1) { id }", 400, limit_exceeded(FILTER_DEPTH.format(67))),
        ("users(" + " OR ".join(f"id = {i}" for i in range(1000)) + ") { id }", 400,
         limit_exceeded(TERMS.format(5897))),
        ("users(" + " AND ".join(f"id != {i}" for i in range(1000)) + ") { id }", 400,
         limit_exceeded(TERMS.format(6897))),
        ("users(" + ".".join(["posts", "author"] * 10) + ".id = 1) { id }", 400, limit_exceeded(
            "line 1, column 7: the path 'posts.author.posts.author.p...' follows 20 relations "
            "(limit maxPathRelations = 4)")),
        ("users { " + "posts { author { " * 500 + "id" + " } }" * 500 + " }", 400,
         limit_exceeded(DEPTH.format(92))),
        ("users { id OFFSET 9223372036854775807 }", 400, limit_exceeded(
            "line 1, column 12: OFFSET 9223372036854775807 is more than 1000000 "
            "(limit maxOffset = 1000000)")),
        ("users { id LIMIT 99999999999999999999 }", 400, limit_exceeded(
            "line 1, column 12: LIMIT 99999999999999999999 is more than 10000 "
            "(limit maxLimit = 10000)")),
        ("users(id = " + "9" * 5000 + ") { id }", 400, {
            "error": "invalid_query",
            "message": "line 1, column 12: the number 999999999999999999999999999... is out of "
                       "range"}),
        ("users(id > 1e999) { id }", 400, {
            "error": "invalid_query", "message": "line 1, column 12: the number 1e999 is out of "
                                                "range"}),
        ('users(name = "\\udc00") { id }', 400, {  # found by the fuzzer: was a 500
            "error": "invalid_query",
            "message": "line 1, column 15: \\u escape of a lone surrogate: characters beyond "
                       "U+FFFF are written as a pair (\\ud83d\\ude00)"}),
        ("users { id posts(" + "NOT (" * 20 + "id = 1" + ")" * 20 + ") { id } }", 400,
         limit_exceeded(FILTER_DEPTH.format(102))),
    ])
    def test_refused_with_an_envelope(self, mysql_instance, text, status, body):
        worker = Worker(mysql_instance)

        started = time.monotonic()
        response = mysql_instance.query(text)

        assert time.monotonic() - started < 1.0
        assert (response.status_code, response.json()) == (status, body)
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        worker.assert_alive()

    def test_exponential_answer_is_refused_before_it_is_built(self, deep_instance):
        worker = Worker(deep_instance)

        started = time.monotonic()
        response = deep_instance.query(exponential(15))

        assert time.monotonic() - started < 1.0
        assert (response.status_code, response.json()) == (400, limit_exceeded(
            "the answer would hold more than 100000 objects, counting every level as sent (an "
            "object under two parents counts twice) (limit maxAnswerRows = 100000); ask for "
            "fewer rows with filters and LIMIT, or nest fewer relations"))
        worker.assert_alive()

    def test_shared_objects_count_in_the_answer_bytes(self, deep_instance):
        # Few rows, but every comment body repeated under each post of its author.
        response = deep_instance.query("users { posts { author { comments { body } } } }")

        assert (response.status_code, response.json()) == (400, limit_exceeded(
            "the answer would be larger than 4194304 bytes of JSON (limit maxAnswerBytes = "
            "4194304); ask for fewer rows or fields, or nest fewer relations"))
        assert deep_instance.query("users { id posts { id author { name } } }").status_code == 200


class TestLimitsInTheSettings:
    def test_time_budget(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog, limits=QueryLimits(query_timeout_ms=10))
        worker = Worker(instance)

        response = instance.query(SLOW)

        assert (response.status_code, response.json()) == (400, limit_exceeded(
            "the query ran longer than 10 ms (limit queryTimeoutMs = 10); narrow its filters or "
            "ask for fewer rows"))
        assert instance.query("users(id = 3) { id }").json() == [{"id": 3}]
        worker.assert_alive()

    def test_answer_rows_and_root_limits(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog, limits=QueryLimits(
            max_answer_rows=50, default_limit=20, max_limit=40))

        assert len(instance.query("comments { id }").json()) == 20
        assert len(instance.query("comments { id LIMIT 40 }").json()) == 40
        assert instance.query("comments { id LIMIT 41 }").json() == limit_exceeded(
            "line 1, column 15: LIMIT 41 is more than 40 (limit maxLimit = 40)")
        assert instance.query("users { id posts { id } LIMIT 30 }").json() == limit_exceeded(
            "the answer would hold more than 50 objects, counting every level as sent (an "
            "object under two parents counts twice) (limit maxAnswerRows = 50); ask for fewer "
            "rows with filters and LIMIT, or nest fewer relations")

    def test_openapi_lists_the_limits_in_force(self, start_instance, mysql_blog):
        limits = QueryLimits(max_selection_depth=4, query_timeout_ms=750)
        instance = start_instance(mysql_blog, limits=limits)

        response = requests.get(f"{instance.url}/openapi.json",
                                headers={"Authorization": f"Bearer {instance.key}"}, timeout=10)

        operation = response.json()["paths"]["/query"]["post"]
        assert operation["x-query-limits"] == {
            "maxQueryBytes": 65536, "maxSelectionDepth": 4, "maxFilterDepth": 16,
            "maxFilterTerms": 500, "maxPathRelations": 4, "defaultLimit": 1000,
            "maxLimit": 10000, "maxOffset": 1000000, "maxAnswerRows": 100000,
            "maxAnswerBytes": 16777216, "queryTimeoutMs": 750}
        assert "- `maxSelectionDepth` = 4: How deeply selections nest" in operation["description"]
        assert operation["requestBody"]["content"]["text/plain"]["schema"]["maxLength"] == 65536
        assert "`limit_exceeded`" in operation["responses"]["400"]["description"]


class TestQueryText:
    TOO_LARGE = {"error": "payload_too_large",
                 "message": "the query is over 65536 bytes (limit maxQueryBytes = 65536)"}

    def test_over_the_size_limit(self, mysql_instance):
        response = mysql_instance.query("users { id " + " " * 70_000 + "}")

        assert (response.status_code, response.json()) == (413, self.TOO_LARGE)

    def test_chunked_bodies_are_read_under_the_same_limit(self, mysql_instance):
        def chunks(total):
            yield b"users(id = 5) { id "
            for _ in range(total // 1000):
                yield b" " * 1000
            yield b"}"

        headers = {"Authorization": f"Bearer {mysql_instance.key}", "Content-Type": "text/plain"}
        small = requests.post(f"{mysql_instance.url}/query", data=chunks(10_000),
                              headers=headers, timeout=10)
        large = requests.post(f"{mysql_instance.url}/query", data=chunks(100_000),
                              headers=headers, timeout=10)

        assert (small.status_code, small.json()) == (200, [{"id": 5}])
        assert (large.status_code, large.json()) == (413, self.TOO_LARGE)

    def test_not_utf8(self, mysql_instance):
        response = requests.post(f"{mysql_instance.url}/query", data=b"users { \xff\xfe }",
                                 headers={"Authorization": f"Bearer {mysql_instance.key}"},
                                 timeout=10)

        assert (response.status_code, response.json()) == (400, {
            "error": "invalid_query", "message": "the query is not valid UTF-8 text"})


def test_an_answer_too_big_for_the_memory_is_a_503_not_a_crash(start_instance, mysql_blog):
    """orjson ends the process when memory runs out: such an answer is encoded by json."""
    instance = start_instance(mysql_blog, memory_limit_mb=160, limits=QueryLimits(
        max_selection_depth=32, max_answer_rows=10_000_000, max_answer_bytes=1024 ** 3))
    worker = Worker(instance)
    # Each post's comments, each comment's post's comments...: the bodies (~500
    # bytes each) repeat until the answer is some 300 MiB of JSON.
    text = "posts { " + "comments { body post { " * 5 + "id" + " } }" * 5 + " }"

    response = instance.query(text)

    assert (response.status_code, response.json()) == (503, {
        "error": "unavailable",
        "message": "the instance has no memory left for this answer right now; retry shortly, "
                   "or ask for fewer rows"})
    assert response.headers["Retry-After"] == "5"
    worker.assert_alive()
    assert len(instance.query("comments { id }").json()) == min(N_COMMENTS, 1000)


def test_an_answer_within_the_limits_is_served_whatever_sqlite_s_heap(fast_instance):
    """Past JSON_MAX_BYTES, or past SQLite's heap limit, SQLite declines and Python answers."""
    # Every comment's user with all its posts and comments: a few MiB of JSON, more than
    # SQLite's 32 MiB heap allows it to build as one string (it answered 503 once).
    response = fast_instance.query("posts { id comments { id user { ... } LIMIT 1 } author { id } }")

    assert response.status_code == 200, response.text
    posts = response.json()
    assert [post["id"] for post in posts] == list(range(1, len(posts) + 1))
    assert all(len(post["comments"]) <= 1 and set(post["author"]) == {"id"} for post in posts)
    assert {"id", "name", "posts", "comments"} <= set(posts[0]["comments"][0]["user"])
