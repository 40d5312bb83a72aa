"""The query limits: each one refuses with its name and value, before SQL runs where it can.

The HTTP side (status codes, the process staying up) is in
tests/instance/runtime/test_instance_limits.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import orjson
import pytest

from app.contracts.query_limits import LIMIT_SPECS
from app.query import (
    QueryEngine,
    QueryError,
    QueryLimitError,
    QueryLimits,
    SharedConnection,
    execute,
    parse,
    parse_filter,
)
from app.query.executor import answer_plan
from app.query.planner import compile_query

EXPONENTIAL_PAIRS = 22
# The query of issue 6, defect 1: children shared between parents, so the
# answer doubles or more with each pair while the rows read barely grow.
EXPONENTIAL = ("posts { " + "author { id posts { " * EXPONENTIAL_PAIRS + "id"
               + " } }" * EXPONENTIAL_PAIRS + " }")
MAXIMA = QueryLimits(**{name: spec.maximum for name, spec in LIMIT_SPECS.items()})


def refused(artifact, db, text, **limits) -> QueryLimitError:
    """The QueryLimitError `text` raises, checking that no statement ran."""
    statements = []
    db.set_trace_callback(statements.append)
    try:
        with pytest.raises(QueryLimitError) as caught:
            execute(artifact, db, text, **limits)
    finally:
        db.set_trace_callback(None)
    assert statements == []
    return caught.value


def nested_selection(depth: int) -> str:
    """users { posts { author { posts ... { id } } } } with `depth` selections."""
    names = ["users"] + [("posts", "author")[i % 2] for i in range(depth - 1)]
    return " { ".join(names) + " { id" + " }" * depth


class TestCheckedBeforeAnySql:
    """Issue 6, defect 2: each was a 500 (RecursionError, SQLite errors, OverflowError)."""

    @pytest.mark.parametrize("text, message, limit, value", [
        ("users(" + "(" * 300 + "id = 1" + ")" * 300 + ") { id }",
         "line 1, column 23: the filter nests more than 16 deep (parentheses and NOT) "
         "(limit maxFilterDepth = 16)", "maxFilterDepth", 16),
        ("users(" + "NOT " * 100 + "id = 1) { id }",
         "line 1, column 67: the filter nests more than 16 deep (parentheses and NOT) "
         "(limit maxFilterDepth = 16)", "maxFilterDepth", 16),
        ("users(" + " OR ".join(f"id = {i}" for i in range(1000)) + ") { id }",
         "line 1, column 5897: the filters hold more than 500 terms (each predicate and each "
         "IN value is one) (limit maxFilterTerms = 500)", "maxFilterTerms", 500),
        ("users(" + " AND ".join(f"id != {i}" for i in range(1000)) + ") { id }",
         "line 1, column 6897: the filters hold more than 500 terms (each predicate and each "
         "IN value is one) (limit maxFilterTerms = 500)", "maxFilterTerms", 500),
        ("users(" + ".".join(["posts", "author"] * 10) + ".id = 1) { id }",
         "line 1, column 7: the path 'posts.author.posts.author.p...' follows 20 relations "
         "(limit maxPathRelations = 4)", "maxPathRelations", 4),
        (nested_selection(1000),
         "line 1, column 92: selections nest more than 10 deep (limit maxSelectionDepth = 10)",
         "maxSelectionDepth", 10),
        ("users { id OFFSET 9223372036854775807 }",
         "line 1, column 12: OFFSET 9223372036854775807 is more than 1000000 "
         "(limit maxOffset = 1000000)", "maxOffset", 1_000_000),
        ("users { id LIMIT " + "9" * 5000 + " }",
         "line 1, column 12: LIMIT 999999999999999999999999999... is more than 10000 "
         "(limit maxLimit = 10000)", "maxLimit", 10_000),
        (EXPONENTIAL,
         "line 1, column 107: selections nest more than 10 deep (limit maxSelectionDepth = 10)",
         "maxSelectionDepth", 10),
    ])
    def test_refused_with_the_limit_and_its_value(self, artifact, db, text, message, limit,
                                                 value):
        error = refused(artifact, db, text)

        assert (str(error), error.limit, error.value) == (message, limit, value)

    def test_not_in_a_nested_selection_filter(self, artifact, db):
        error = refused(artifact, db, "users { id posts(" + "NOT (" * 9 + "id = 1"
                        + ")" * 9 + ") { id } }")
        assert error.limit == "maxFilterDepth"

    def test_in_values_count_as_terms(self, artifact, db):
        values = ", ".join(map(str, range(501)))
        error = refused(artifact, db, f"users(id IN ({values})) {{ id }}")
        assert error.limit == "maxFilterTerms"
        assert len(execute(artifact, db, f"users(id IN ({values})) {{ id }}",
                           max_filter_terms=501)) == 5

    def test_query_text_size(self, artifact, db):
        text = "users { id" + " " * 65_536 + "}"
        error = refused(artifact, db, text)
        assert str(error) == "the query is 65547 bytes long (limit maxQueryBytes = 65536)"
        # Bytes, not characters: 20,000 'é' are 40,000 bytes.
        error = refused(artifact, db, 'users(name = "' + "é" * 20_000 + '") { id }',
                        max_query_bytes=32_768)
        assert str(error) == "the query is 40023 bytes long (limit maxQueryBytes = 32768)"


class TestBoundaries:
    """Exactly at a limit is accepted; one past it is refused."""

    def test_selection_depth(self, artifact, db):
        assert execute(artifact, db, nested_selection(10))
        assert refused(artifact, db, nested_selection(11)).limit == "maxSelectionDepth"

    def test_filter_depth(self, artifact, db):
        # The filter's own parentheses are level 1, each NOT and inner pair one more.
        at_limit = "users(" + "NOT (" * 7 + "NOT id = 1" + ")" * 7 + ") { id }"
        over = "users(" + "NOT (" * 7 + "NOT (id = 1)" + ")" * 7 + ") { id }"
        assert execute(artifact, db, at_limit)
        assert refused(artifact, db, over).limit == "maxFilterDepth"

    def test_terms(self, artifact, db):
        terms = " OR ".join(["id = 1"] * 500)
        assert execute(artifact, db, f"users({terms}) {{ id }}") == [{"id": 1}]
        assert refused(artifact, db, f"users({terms} OR id = 2) {{ id }}").limit == (
            "maxFilterTerms")

    def test_terms_count_across_the_whole_query(self, artifact, db):
        half = " OR ".join(["id = 1"] * 250)
        text = f"users({half}) {{ id posts({half} OR id = 2) {{ id }} }}"
        assert refused(artifact, db, text).limit == "maxFilterTerms"

    def test_path_relations(self, artifact, db):
        assert execute(artifact, db, 'users(posts.author.posts.author.name = "Ada") { id }')
        assert refused(artifact, db, 'users(posts.author.posts.author.posts.id = 1) { id }'
                       ).limit == "maxPathRelations"

    def test_limit_and_offset(self, artifact, db):
        assert execute(artifact, db, "users { id LIMIT 10000 OFFSET 1000000 }") == []
        assert refused(artifact, db, "users { id OFFSET 1000001 }").limit == "maxOffset"
        assert refused(artifact, db, "users { id LIMIT 10001 }").limit == "maxLimit"


class TestConfigFilters:
    """Issue 6, defects 3 and 4: the control plane validates `where` with parse_filter."""

    @pytest.mark.parametrize("text, message", [
        ("(" * 1990, "line 1, column 18: the filter nests more than 16 deep (parentheses and "
                     "NOT) (limit maxFilterDepth = 16)"),
        ("(" * 1990 + "a = 1" + ")" * 1990,
         "line 1, column 18: the filter nests more than 16 deep (parentheses and NOT) "
         "(limit maxFilterDepth = 16)"),
        ("NOT " * 995 + "a = 1",
         "line 1, column 61: the filter nests more than 16 deep (parentheses and NOT) "
         "(limit maxFilterDepth = 16)"),
        ("NOT " * 995, "line 1, column 3981: expected a field name, '(' or NOT but found the "
                       "end of the query"),
    ])
    def test_deep_filters_are_query_errors(self, text, message):
        """Were RecursionErrors (500s) when the control plane validated a config."""
        with pytest.raises(QueryError) as caught:
            parse_filter(text)
        assert str(caught.value) == message

    def test_a_config_of_255_long_filters_parses_in_milliseconds(self):
        """255 tables × 4,000-character `where` took 9 s of CPU to validate."""
        shapes = ["(" * 1990 + "a = 1" + ")" * 1990, "NOT " * 995 + "a = 1",
                  " AND ".join(f"c{i} = {i}" for i in range(400))[:3990] + " = 1",
                  'a IN (' + ", ".join('"x"' for _ in range(800)) + ')']
        started = time.process_time()
        for i in range(255):
            with pytest.raises(QueryError):
                parse_filter(shapes[i % len(shapes)])
        per_filter = (time.process_time() - started) / 255
        assert per_filter < 0.05, f"{per_filter * 1000:.1f} ms per filter"

    def test_a_filter_within_the_limits_still_parses(self):
        text = " AND ".join(f"c{i} = {i}" for i in range(300))
        assert len(parse_filter(text).operands) == 300


class TestAnswerLimits:
    """Issue 6, defect 1: the answer is counted as the tree sent, before it is encoded."""

    def test_the_exponential_query_is_refused_quickly(self, artifact, big_db):
        text = "posts { " + "author { id posts { " * 15 + "id" + " } }" * 15 + " }"
        started = time.monotonic()
        with pytest.raises(QueryLimitError) as caught:
            execute(artifact, big_db, text, limits=MAXIMA, max_answer_rows=100_000,
                    max_answer_bytes=16 * 1024 * 1024)
        assert time.monotonic() - started < 1.0
        assert str(caught.value) == (
            "the answer would hold more than 100000 objects, counting every level as sent (an "
            "object under two parents counts twice) (limit maxAnswerRows = 100000); ask for "
            "fewer rows with filters and LIMIT, or nest fewer relations")

    @pytest.mark.parametrize("text", [
        "users { id name posts { * comments { * } } }",
        "posts { id title author { name avatar posts { id } } }",
        "users { id name email manager { id name manager { name } } reports { id } }",
        "posts { id author { id posts { id author { name } } } }",
    ])
    def test_counts_match_the_json_sent(self, artifact, big_db, text):
        answer = answer_plan(compile_query(artifact, text), big_db,
                             QueryLimits(default_limit=10_000, max_answer_rows=10_000_000))
        sent = orjson.dumps(answer.objects)

        assert answer.rows == _objects_in(json.loads(sent))  # (no JSON columns selected)
        # The estimate counts every byte but escapes; ASCII data has none.
        assert 0.95 * len(sent) <= answer.estimated_bytes <= 1.15 * len(sent)

    def test_json_values_are_estimated_by_their_text(self, artifact, big_db):
        answer = answer_plan(compile_query(artifact, "users { ... }"), big_db,
                             QueryLimits(max_answer_rows=10_000_000))
        sent = orjson.dumps(answer.objects)
        assert 0.95 * len(sent) <= answer.estimated_bytes <= 1.15 * len(sent)

    def test_rows_at_the_limit_pass(self, artifact, db):
        text = "users { id posts { id } }"  # 5 users + 6 posts
        assert len(execute(artifact, db, text, max_answer_rows=11)) == 5
        error = refused_at_run_time(artifact, db, text, max_answer_rows=10)
        assert (error.limit, error.value) == ("maxAnswerRows", 10)

    def test_bytes(self, artifact, db, make_snapshot):
        text = "users { name email }"
        size = len(orjson.dumps(execute(artifact, db, text)))
        assert execute(artifact, db, text, max_answer_bytes=max(size + 16, 1024))
        big = make_snapshot(artifact, {"app_users": [
            (i, "x" * 400, None, None, None, None, None, None, None, None, None, None)
            for i in range(10)]})
        error = refused_at_run_time(artifact, big, text, max_answer_bytes=1024)
        assert str(error) == (
            "the answer would be larger than 1024 bytes of JSON (limit maxAnswerBytes = 1024); "
            "ask for fewer rows or fields, or nest fewer relations")

    def test_a_statement_stops_reading_past_the_row_limit(self, artifact, big_db):
        fetched = []
        engine = QueryEngine(artifact, max_answer_rows=100, default_limit=10_000)
        original = big_db.cursor
        with pytest.raises(QueryLimitError):
            engine.execute(_CountingConnection(original, fetched), "comments { id }")
        assert fetched == [101]


class TestTimeBudget:
    SLOW = 'comments(author.comments.author.comments.body LIKE "%zz%") { id }'

    def test_a_statement_is_interrupted_at_the_deadline(self, artifact, big_db):
        connection = _shared_copy(big_db)
        engine = QueryEngine(artifact, query_timeout_ms=10, default_limit=10_000)

        started = time.monotonic()
        with pytest.raises(QueryLimitError) as caught:
            engine.execute(connection, self.SLOW)

        assert time.monotonic() - started < 0.5
        assert str(caught.value) == ("the query ran longer than 10 ms (limit queryTimeoutMs = "
                                     "10); narrow its filters or ask for fewer rows")
        # The connection is fine afterwards, and the deadline was per query.
        assert engine.execute(connection, "users(id = 1) { id }") == [{"id": 1}]

    def test_threads_sharing_a_connection_never_deadlock(self, artifact, big_db):
        """The deadline check needs the GIL while a statement holds the connection's mutex."""
        connection = _shared_copy(big_db)
        slow = QueryEngine(artifact, query_timeout_ms=20, default_limit=10_000)
        fast = QueryEngine(artifact, default_limit=10_000)
        outcomes = []

        def work(engine, text):
            for _ in range(5):
                try:
                    outcomes.append(len(engine.execute(connection, text)))
                except QueryLimitError as exc:
                    outcomes.append(exc.limit)

        threads = [threading.Thread(target=work, args=(slow, self.SLOW)) for _ in range(3)]
        threads += [threading.Thread(target=work, args=(fast, "posts { id author { name } }"))
                    for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "deadlocked"
        assert sorted(set(outcomes), key=str) == [2000, "queryTimeoutMs"]


class TestMaximaAreSafe:
    """At the highest value of every limit, the worst shapes still run (no SQLite error)."""

    PATH = ".".join(["posts", "author"] * 4) + ".name"  # 8 relations

    def shapes(self):
        depth = MAXIMA.max_filter_depth
        nested = f'{self.PATH} = "x"'
        for _ in range((depth - 2) // 2):  # NOT ( ... ): two levels each
            nested = f'NOT (id = 2 OR {self.PATH} = "z" OR {nested})'
        yield f"(id = 3 OR {nested})"
        yield "(" * (depth - 1) + f'{self.PATH} = "x" OR id = 3' + ")" * (depth - 1)
        chain = " OR ".join(f"{self.PATH} = {j}" for j in range(20))
        yield f"{chain} OR (" * (depth - 2) + "id = 9" + ")" * (depth - 2)
        yield " OR ".join(f"id = {i}" for i in range(MAXIMA.max_filter_terms))
        yield "id IN (" + ", ".join(map(str, range(MAXIMA.max_filter_terms))) + ")"

    def test_worst_filters_in_every_kind_of_statement(self, artifact, db):
        for shape in self.shapes():
            for text in (f"users({shape}) {{ id }}",
                         f"users {{ id reports({shape}) {{ id ORDER BY id DESC LIMIT 2 "
                         "OFFSET 1 } }"):
                assert isinstance(execute(artifact, db, text, limits=MAXIMA), list)

    def test_deepest_selection(self, artifact, db):
        assert execute(artifact, db, nested_selection(MAXIMA.max_selection_depth),
                       limits=MAXIMA)

    def test_limits_outside_their_range_are_refused(self):
        with pytest.raises(ValueError, match="maxSelectionDepth: an integer from 1 to 32"):
            QueryLimits(max_selection_depth=33)
        with pytest.raises(ValueError, match="queryTimeoutMs: an integer from 10 to 60000"):
            dataclasses.replace(QueryLimits(), query_timeout_ms=True)


def test_parse_takes_the_limits_it_is_given():
    with pytest.raises(QueryLimitError, match="maxSelectionDepth = 2"):
        parse("users { posts { author { id } } }", QueryLimits(max_selection_depth=2))


# -- helpers ------------------------------------------------------------------

def refused_at_run_time(artifact, db, text, **limits) -> QueryLimitError:
    with pytest.raises(QueryLimitError) as caught:
        execute(artifact, db, text, **limits)
    return caught.value


def _objects_in(value) -> int:
    if isinstance(value, list):
        return sum(_objects_in(item) for item in value)
    if isinstance(value, dict):
        return 1 + sum(_objects_in(item) for item in value.values())
    return 0


def _shared_copy(snapshot):
    """A copy of `snapshot` on a SharedConnection enforcing time budgets, as the instance has."""
    connection = SharedConnection(":memory:", check_same_thread=False)
    snapshot.backup(connection)
    connection.enforce_time_budget()
    return connection


class _CountingConnection:
    """A connection whose cursors record how many rows each fetch returned."""

    def __init__(self, cursor_factory, fetched):
        self._cursor_factory = cursor_factory
        self._fetched = fetched

    def cursor(self):
        return _CountingCursor(self._cursor_factory(), self._fetched)


class _CountingCursor:
    def __init__(self, cursor, fetched):
        self._cursor = cursor
        self._fetched = fetched
        self.row_factory = None

    def execute(self, *args):
        self._cursor.execute(*args)
        return self

    def fetchmany(self, size):
        rows = self._cursor.fetchmany(size)
        self._fetched.append(len(rows))
        return rows

    def close(self):
        self._cursor.close()
