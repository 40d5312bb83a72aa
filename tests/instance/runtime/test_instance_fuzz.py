"""Property-based attack on a real instance process: pathological queries through HTTP.

Whatever the body (deep nesting, long chains, many terms, huge numbers, odd
Unicode, random bytes), the answer is a 200 with rows or a 4xx envelope, in
under a second, and the process that holds the snapshot is still the same one.
"""

from __future__ import annotations

import json
import time

import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

TABLES = ["users", "posts", "comments"]
NAMES = TABLES + ["author", "user", "post", "pinned_post", "id", "name", "email", "title",
                  "body", "published", "approved", "version", "author_id", "nope", "`id`",
                  "`we``ird`", "order", "limit", "NOT", "null"]
OPERATORS = ["=", "!=", "<>", "<", "<=", ">", ">="]


def _quoted(text: str) -> str:
    return json.dumps(text)  # JSON escapes are the language's string escapes


numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(1, 6000).map(lambda digits: "9" * digits),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "-1e999", "1e-999", "0.0", "-0", "00000000000000000000001",
                     "9223372036854775807", "9223372036854775808", "-9223372036854775809"]),
)
odd_text = st.text(st.characters(), max_size=40)
values = st.one_of(numbers, odd_text.map(_quoted), st.sampled_from(["true", "false", "null"]))
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=30).map(".".join)

predicates = st.one_of(
    st.tuples(paths, st.sampled_from(OPERATORS), values).map(" ".join),
    st.tuples(paths, st.lists(values, max_size=8)).map(
        lambda p: f"{p[0]} IN ({', '.join(p[1])})"),
    st.tuples(paths, st.sampled_from(["LIKE", "NOT ILIKE"]), odd_text.map(_quoted)).map(
        " ".join),
    st.tuples(paths, values, values).map(lambda p: f"{p[0]} BETWEEN {p[1]} AND {p[2]}"),
    paths.map(lambda p: f"{p} IS NOT NULL"),
)
filters = st.one_of(
    st.recursive(predicates, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" AND ", " OR "]), inner).map("".join),
        inner.map(lambda e: f"NOT {e}"),
        inner.map(lambda e: f"({e})"),
    ), max_leaves=30),
    st.tuples(st.integers(1, 400), predicates).map(lambda p: "(" * p[0] + p[1] + ")" * p[0]),
    st.tuples(st.integers(1, 400), predicates).map(lambda p: "NOT " * p[0] + p[1]),
    st.tuples(st.integers(1, 1500), predicates, st.sampled_from([" OR ", " AND "])).map(
        lambda p: p[2].join([p[1]] * p[0])),
)
paging = st.tuples(
    st.one_of(st.none(), st.sampled_from(NAMES)),
    st.one_of(st.none(), numbers),
    st.one_of(st.none(), numbers),
).map(lambda p: (f" ORDER BY {p[0]} DESC" if p[0] else "") + (f" LIMIT {p[1]}" if p[1] else "")
      + (f" OFFSET {p[2]}" if p[2] else ""))


def _selection(entries):
    return st.tuples(st.sampled_from(NAMES), st.one_of(st.none(), filters),
                     st.lists(entries, min_size=1, max_size=5), paging).map(
        lambda s: s[0] + (f"({s[1]})" if s[1] else "") + " { " + " ".join(s[2]) + s[3] + " }")


selections = st.recursive(st.sampled_from(NAMES + ["*", "..."]), _selection, max_leaves=25)
chains = st.tuples(st.integers(1, 300), st.sampled_from(["posts { author { ", "comments { post { ",
                                                        "user { comments { "])).map(
    lambda c: "users { " + c[1] * c[0] + "id" + " } }" * c[0] + " }")
# The blog's real names, so that generated queries also get past name
# resolution and make the instance read, count and encode rows.
FIELDS = {"users": ["id", "name", "email", "version"],
          "posts": ["id", "title", "published", "version"],
          "comments": ["id", "body", "approved", "version"]}
RELATIONS = {"users": [("posts", "posts"), ("pinned_post", "posts"), ("comments", "comments")],
             "posts": [("author", "users"), ("users", "users"), ("comments", "comments")],
             "comments": [("post", "posts"), ("user", "users")]}


@st.composite
def real_paths(draw, table, wild):
    names = []
    for _ in range(draw(st.integers(0, 12) if wild else st.integers(0, 4))):
        relation, table = draw(st.sampled_from(RELATIONS[table]))
        names.append(relation)
    return ".".join(names + [draw(st.sampled_from(FIELDS[table]))])


@st.composite
def real_filters(draw, table, wild, leaves=8):
    some_values = values if wild else st.integers(-5, 3000).map(str)
    if leaves <= 1 or draw(st.booleans()):
        path = draw(real_paths(table, wild))
        kind = draw(st.sampled_from(["compare", "in", "like", "null"]))
        if kind == "compare":
            return f"{path} {draw(st.sampled_from(OPERATORS))} {draw(some_values)}"
        if kind == "in":
            listed = draw(st.lists(some_values, min_size=1, max_size=600 if wild else 50))
            return f"{path} IN ({', '.join(listed)})"
        if kind == "like":
            return f'{path} LIKE {_quoted(draw(odd_text) + "%")}'
        return f"{path} IS NULL"
    left = draw(real_filters(table, wild, leaves // 2))
    right = draw(real_filters(table, wild, leaves // 2))
    shape = draw(st.sampled_from(["{} AND {}", "{} OR {}", "NOT ({} OR {})", "(({}) AND {})"]))
    return shape.format(left, right)


@st.composite
def real_queries(draw, wild, table=None, depth=1):
    """Queries on the blog's real tables, relations and fields; `wild` ones go past limits."""
    table = table or draw(st.sampled_from(TABLES))
    entries = draw(st.lists(st.sampled_from(FIELDS[table] + ["*", "..."]), min_size=1,
                            max_size=4))
    if depth < (14 if wild else 9):
        for relation, target in draw(st.lists(st.sampled_from(RELATIONS[table]),
                                              max_size=2 if depth < 4 else 1)):
            nested = draw(real_queries(wild, target, depth + 1))
            entries.append(relation + nested.split(" ", 1)[1])
    where = f"({draw(real_filters(table, wild))})" if draw(st.booleans()) else ""
    order = draw(st.one_of(st.just(""), st.sampled_from(FIELDS[table]).map(
        lambda field: f" ORDER BY {field} DESC")))
    window = draw(paging) if wild else draw(st.one_of(st.just(""), st.integers(0, 50).map(
        lambda n: f" LIMIT {n}")))
    return f"{table} {where}{{ {' '.join(entries)}{order if not wild else ''}{window} }}"


queries = st.one_of(
    real_queries(wild=False),
    real_queries(wild=False),
    real_queries(wild=True),
    st.tuples(st.sampled_from(TABLES), selections).map(
        lambda q: q[0] + " { " + q[1] + " }"),
    st.tuples(st.sampled_from(TABLES), filters).map(lambda q: f"{q[0]}({q[1]}) {{ id }}"),
    chains,
    st.text(max_size=300),
)
bodies = st.one_of(queries.map(lambda text: text.encode("utf-8", "surrogatepass")),
                   st.binary(max_size=300))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(body=bodies)
def test_any_body_is_rows_or_a_4xx_envelope_in_under_a_second(fast_instance, body):
    worker = fast_instance.worker
    started = time.monotonic()
    response = requests.post(f"{fast_instance.url}/query", data=body, timeout=10, headers={
        "Authorization": f"Bearer {fast_instance.key}", "Content-Type": "text/plain"})
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"{elapsed:.2f} s"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    answer = response.json()
    event(f"{response.status_code} {answer.get('error') if isinstance(answer, dict) else ''}")
    if response.status_code == 200:
        assert isinstance(answer, list)
    else:
        assert 400 <= response.status_code < 500, answer
        assert set(answer) == {"error", "message"}
        assert answer["error"] in ("invalid_query", "limit_exceeded", "payload_too_large")
        assert isinstance(answer["message"], str) and answer["message"]
    worker.assert_alive()
