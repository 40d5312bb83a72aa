"""Plans cached by query shape (QueryEngine): the same answers and errors as the full parse of each text."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.query import QueryEngine, QueryError, QueryLimitError, execute
from app.query.shapes import NUMBER, STRING, shape_of
from tests.query.test_query_fuzz import query_text


def outcome(call, text):
    """What a query gives: its rows, or its error as a client sees it."""
    try:
        return "rows", call(text)
    except QueryError as exc:
        return type(exc).__name__, str(exc), getattr(exc, "limit", None), getattr(exc, "value", None)


def both(artifact, db, engine, text, **limits):
    """The shaped answer and the full parse's, for one text."""
    return (outcome(lambda t: engine.execute(db, t), text),
            outcome(lambda t: execute(artifact, db, t, **limits), text))


class TestShapeOf:
    def test_literals_are_cut_out_in_text_order(self):
        shape, raws = shape_of('users(age >= -7 AND name IN ("a\\"b", "c")) { id LIMIT 5 OFFSET 10 }')
        assert shape == ("users(age >= ", NUMBER, " AND name IN (", STRING, ", ", STRING,
                         ")) { id LIMIT ", NUMBER, " OFFSET ", NUMBER, " }")
        assert raws == ["-7", '"a\\"b"', '"c"', "5", "10"]

    def test_texts_differing_only_in_values_share_a_shape(self):
        assert shape_of("posts(id = 123) { id }")[0] == shape_of("posts(id = -4.5e3) { id }")[0]
        assert shape_of('posts(title = "") { id }')[0] == shape_of(
            'posts(title = "x \\" y {}") { id }')[0]

    def test_kind_and_count_of_values_stay_in_the_shape(self):
        assert shape_of('posts(id = 1) { id }')[0] != shape_of('posts(id = "1") { id }')[0]
        assert shape_of("posts(id IN (1)) { id }")[0] != shape_of("posts(id IN (1, 2)) { id }")[0]
        assert shape_of("posts(published = true) { id }")[1] == []

    def test_digits_in_names_and_quoted_names_are_not_values(self):
        shape, raws = shape_of('t2(`a "1` = 3 AND x1.y22 = 4) { c3 }')
        assert shape == ('t2(`a "1` = ', NUMBER, " AND x1.y22 = ", NUMBER, ") { c3 }")
        assert raws == ["3", "4"]

    def test_an_open_quote_has_no_shape(self):
        assert shape_of('users(name = "Ada) { id }') is None
        assert shape_of("users { `id }") is None


class TestPlanReuse:
    def test_one_plan_for_every_post_id(self, artifact, db):
        engine = QueryEngine(artifact)
        for post in (10, 11, 12, 99, -1):
            text = f"posts(id = {post}) {{ id title author {{ name }} comments {{ body }} }}"
            shaped, full = both(artifact, db, engine, text)
            assert shaped == full
        assert (engine.shapes.misses, engine.shapes.hits, len(engine.shapes)) == (1, 4, 1)
        assert engine.execute(db, "posts(id = 12) { id title author { name } comments { body } }") == [
            {"id": 12, "title": "Bob's post", "author": {"name": "Bob"},
             "comments": [{"body": "ok"}]}]

    def test_one_plan_for_every_page(self, artifact, big_db):
        engine = QueryEngine(artifact)
        for offset in (0, 50, 1990, 5000):
            text = f"posts(published = true) {{ id title LIMIT 50 OFFSET {offset} }}"
            assert engine.execute(big_db, text) == execute(artifact, big_db, text)
        assert engine.execute(big_db, "posts(published = true) { id LIMIT 2 OFFSET 3 }") == [
            {"id": 22}, {"id": 30}]
        assert (engine.shapes.misses, engine.shapes.hits) == (2, 3)

    def test_strings_with_quotes_and_escapes(self, artifact, db):
        engine = QueryEngine(artifact)
        names = ['Eve "the" O\'Neil', "Ada", "", "\\", "\u00e9\U0001f600", "a\nb"]
        for name in names:
            text = f"users(name = {json.dumps(name)} OR name = {json.dumps(name, ensure_ascii=False)}) {{ id name }}"
            shaped, full = both(artifact, db, engine, text)
            assert shaped == full
        assert engine.execute(db, 'users(name = "Eve \\"the\\" O\'Neil" OR name = "") { id name }') == [
            {"id": 5, "name": 'Eve "the" O\'Neil'}]
        assert engine.execute(db, 'users(name = "\\u0041da" OR name = "B\\u006f\\u0062") { id name }') == [
            {"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}]
        assert (engine.shapes.misses, engine.shapes.hits) == (1, 7)

    def test_like_patterns_are_converted_per_value(self, artifact, db):
        engine = QueryEngine(artifact)
        for pattern, expected in (("100\\\\%%", [13]), ("%_%", [10, 11, 12, 13, 14]),
                                  ("h%", []), ("H%", [10]), ("*", [])):
            text = f'posts(title LIKE "{pattern}" AND NOT title ILIKE "%AGAIN%") {{ id }}'
            assert [row["id"] for row in engine.execute(db, text)] == expected
            assert engine.execute(db, text) == execute(artifact, db, text)
        assert engine.shapes.misses == 1

    def test_negative_and_decimal_numbers(self, artifact, db):
        engine = QueryEngine(artifact)
        for low, high in (("-1", "20"), ("-9223372036854775808", "9223372036854775807"),
                          ("3.25", "9.5"), ("-1e3", "+1E1"), ("0", "-0")):
            text = f"users(score BETWEEN {low} AND {high}) {{ id score }}"
            assert both(artifact, db, engine, text)[0] == both(artifact, db, engine, text)[1]
        assert engine.execute(db, "users(score BETWEEN -1e3 AND +1E1) { id score }") == [
            {"id": 1, "score": 9.5}, {"id": 2, "score": 3.25}, {"id": 3, "score": 7.0},
            {"id": 5, "score": 1.5}]
        assert engine.shapes.misses == 1

    def test_values_in_nested_selections(self, artifact, db):
        engine = QueryEngine(artifact)
        template = ('users(id <= {}) {{ id posts(title != "{}") {{ id comments(id > {}) {{ id '
                    'ORDER BY id DESC LIMIT {} }} LIMIT {} OFFSET {} }} }}')
        for values in ((3, "Hello", 0, 1, 1, 0), (5, "Draft", 100, 2, 5, 1),
                       (2, "", 101, 0, 1, 1), (4, "x", -5, 10, 0, 0)):
            text = template.format(*values)
            assert both(artifact, db, engine, text)[0] == both(artifact, db, engine, text)[1]
        assert engine.execute(db, template.format(5, "Draft", 100, 2, 5, 1)) == [
            {"id": 1, "posts": []}, {"id": 2, "posts": []},
            {"id": 3, "posts": [{"id": 14, "comments": []}]},
            {"id": 4, "posts": []}, {"id": 5, "posts": []}]
        assert engine.shapes.misses == 1

    def test_the_cache_is_bounded(self, artifact, db):
        engine = QueryEngine(artifact, cache_size=2)
        for field in ("id", "name", "email", "id"):
            engine.execute(db, f"users(id = 1) {{ {field} }}")
        assert (len(engine.shapes), engine.shapes.misses, engine.shapes.hits) == (2, 4, 0)

    def test_a_shape_the_parse_reads_otherwise_is_planned_by_text(self, artifact, db):
        # `AND-5`: the parse reads the number -5, the shapes see no value there.
        engine = QueryEngine(artifact)
        for high in ("-5", "-50"):
            text = f"users(age NOT BETWEEN 20 AND{high}) {{ id }}"
            assert engine.execute(db, text) == execute(artifact, db, text) == [
                {"id": 1}, {"id": 2}, {"id": 4}, {"id": 5}]
        assert engine.shapes.misses == 2  # "-5" and "-50" differ in the shape
        assert engine.compile.cache_info().misses == 2


    def test_a_relation_given_twice_is_planned_by_text(self, artifact, db):
        # The first `posts` is replaced by the second, so its value is in no statement.
        engine = QueryEngine(artifact)
        for post in (10, 12):
            text = f"users(id = 1) {{ posts(id = {post}) {{ id }} posts(id > 10) {{ id }} }}"
            assert engine.execute(db, text) == execute(artifact, db, text) == [
                {"posts": [{"id": 11}]}]
        assert (engine.shapes.misses, engine.shapes.hits) == (1, 1)
        assert engine.compile.cache_info().misses == 2

class TestErrorsPerRequest:
    """A value the parse refuses is refused on a cached shape too, with the same message."""

    @pytest.mark.parametrize("first, second, error", [
        ("users { id LIMIT 5 }", "users { id LIMIT 10001 }",
         "line 1, column 12: LIMIT 10001 is more than 10000 (limit maxLimit = 10000)"),
        ("users { id OFFSET 5 }", "users { id OFFSET 99999999999999999999999999 }",
         "line 1, column 12: OFFSET 99999999999999999999999999 is more than 1000000 "
         "(limit maxOffset = 1000000)"),
        ("users { id posts { id LIMIT 1 } }", "users { id posts { id LIMIT 1.5 } }",
         "line 1, column 29: LIMIT needs a whole number from 0 to 10000, not 1.5"),
        ("users { id OFFSET 1 }", "users { id OFFSET -1 }",
         "line 1, column 19: OFFSET needs a whole number from 0 to 1000000, not -1"),
        ("users(id = 1) { id }", "users(id = 9223372036854775808) { id }",
         "line 1, column 12: the number 9223372036854775808 is out of range"),
        ("users(score = 1.5) { id }", "users(score = 1e999) { id }",
         "line 1, column 15: the number 1e999 is out of range"),
        ('users(name = "a") { id }', 'users(name = "\\ud800") { id }',
         "line 1, column 15: \\u escape of a lone surrogate: characters beyond U+FFFF are "
         "written as a pair (\\ud83d\\ude00)"),
        ('users(name = "a") { id }', 'users(name = "\n\\u12") { id }',
         "line 2, column 1: \\u needs four hexadecimal digits"),
    ])
    def test_refused_with_the_full_parse_message(self, artifact, db, first, second, error):
        engine = QueryEngine(artifact)
        engine.execute(db, first)
        with pytest.raises(QueryError) as caught:
            engine.execute(db, second)
        assert str(caught.value) == error
        assert both(artifact, db, engine, second)[0] == both(artifact, db, engine, second)[1]
        assert engine.execute(db, first) == execute(artifact, db, first)
        assert engine.shapes.misses == 1

    def test_limits_of_the_engine_apply_per_value(self, artifact, db):
        engine = QueryEngine(artifact, max_limit=3, max_offset=2)
        assert engine.execute(db, "users { id LIMIT 3 OFFSET 2 }") == [{"id": 3}, {"id": 4}, {"id": 5}]
        with pytest.raises(QueryLimitError) as caught:
            engine.execute(db, "users { id LIMIT 3 OFFSET 3 }")
        assert (caught.value.limit, caught.value.value) == ("maxOffset", 2)
        with pytest.raises(QueryLimitError, match=r"^line 1, column 12: LIMIT 4 is more than 3"):
            engine.execute(db, "users { id LIMIT 4 OFFSET 0 }")

    def test_text_size_is_checked_on_every_text(self, artifact, db):
        engine = QueryEngine(artifact, max_query_bytes=1024)
        assert engine.execute(db, 'users(name = "Ada") { id }') == [{"id": 1}]
        with pytest.raises(QueryLimitError) as caught:
            engine.execute(db, 'users(name = "' + "é" * 600 + '") { id }')
        assert (caught.value.limit, str(caught.value)) == (
            "maxQueryBytes", "the query is 1223 bytes long (limit maxQueryBytes = 1024)")


# -- property: shaped == full parse, for random texts of random shapes -----------------------

FIELDS = {"users": ["id", "name", "email", "plan", "age", "active", "score", "joined"],
          "posts": ["id", "title", "published", "created_at"],
          "comments": ["id", "body", "approved", "post_id"]}
RELATIONS = {"users": [("posts", "posts"), ("reports", "users"), ("manager", "users")],
             "posts": [("author", "users"), ("comments", "comments")],
             "comments": [("post", "posts"), ("author", "users")]}
OPERATORS = ["=", "!=", "<>", "<", "<=", ">", ">="]
VALUE, TEXT, COUNT = "\x01v", "\x01s", "\x01n"  # where a template takes a value

# Mostly values the parse accepts, so that most texts run; sometimes one it refuses.
numbers = st.one_of(
    st.integers(-3, 120).map(str), st.integers(-3, 120).map(str),
    st.integers(-(2**63), 2**63 - 1).map(str), st.integers(-(2**66), 2**66).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["1e999", "-0", "+7", "007", "9223372036854775808", "2.5e-3"]))
strings = st.one_of(
    st.sampled_from(["Ada", "Bob", "pro", "free", "Hello", "nice", "%", "_", "2024-01-01"]),
    st.sampled_from(["A%", "%o%", "_o_", "%e"]), st.text(max_size=12)).map(json.dumps) | \
    st.sampled_from(['"a\\"b"', '"\\ud83d\\ude00"', '"\\\\"', '"\\q"', '"\\ud800"', '"\\u12"'])
counts = st.one_of(st.integers(0, 12).map(str), st.integers(0, 12).map(str), st.sampled_from(
    ["0", "10000", "00003", "10001", "1000001", "1.5", "-1", "+2", "99999999999999999999999"]))
values = st.one_of(numbers, strings)


@st.composite
def predicates(draw, table):
    path, target = "", table
    if draw(st.integers(0, 3)) == 0:
        relation, target = draw(st.sampled_from(RELATIONS[table]))
        path = relation + "."
    path += draw(st.sampled_from(FIELDS[target]))
    kind = draw(st.sampled_from(["compare", "in", "like", "between", "null", "bool"]))
    if kind == "compare":
        return f"{path} {draw(st.sampled_from(OPERATORS))} {VALUE}"
    if kind == "in":
        return f"{path} {draw(st.sampled_from(['', 'NOT ']))}IN ({', '.join([VALUE] * draw(st.integers(1, 3)))})"
    if kind == "like":
        return f"{path} {draw(st.sampled_from(['LIKE', 'NOT LIKE', 'ILIKE']))} {TEXT}"
    if kind == "between":
        return f"{path} {draw(st.sampled_from(['', 'NOT ']))}BETWEEN {VALUE} AND {VALUE}"
    if kind == "null":
        return f"{path} IS NOT NULL"
    return f"{path} = {draw(st.sampled_from(['true', 'false']))}"


@st.composite
def filters(draw, table, leaves=4):
    if leaves <= 1 or draw(st.booleans()):
        return draw(predicates(table))
    left, right = draw(filters(table, leaves // 2)), draw(filters(table, leaves // 2))
    return draw(st.sampled_from(["{} AND {}", "{} OR {}", "NOT ({} OR {})", "({}) AND {}"])).format(
        left, right)


@st.composite
def templates(draw, table=None, depth=0, many=True):
    """A query with a mark where each value goes: `posts(id = \\x01v) { id LIMIT \\x01n }`."""
    table = table or draw(st.sampled_from(list(FIELDS)))
    entries = draw(st.lists(st.sampled_from(FIELDS[table] + ["*"]), min_size=1, max_size=3))
    if depth < 2:
        # Each relation once: a relation given twice keeps the last, whose shape is then
        # planned by text (test_a_relation_given_twice_is_planned_by_text).
        for relation, target in draw(st.lists(st.sampled_from(RELATIONS[table]), max_size=2,
                                              unique=True)):
            nested = draw(templates(target, depth + 1, relation in ("posts", "reports", "comments")))
            entries.append(relation + nested.split(" ", 1)[1])
    where = f"({draw(filters(table))})" if draw(st.booleans()) else ""
    order = draw(st.sampled_from(["", f" ORDER BY {FIELDS[table][-1]} DESC"]))
    paging = draw(st.sampled_from(["", f" LIMIT {COUNT}", f" OFFSET {COUNT}",
                                   f" LIMIT {COUNT} OFFSET {COUNT}"] if many else [""]))
    order = order if many else ""
    return f"{table} {where}{{ {' '.join(entries)}{order}{paging} }}"


@st.composite
def fill(draw, template):
    parts = template.split("\x01")
    out = [parts[0]]
    for part in parts[1:]:
        kind, rest = part[0], part[1:]
        out.append(draw({"v": values, "s": strings, "n": counts}[kind]) + rest)
    return "".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_texts_of_one_shape_answer_as_their_full_parse(artifact, big_db, data):
    template = data.draw(templates())
    texts = [data.draw(fill(template)) for _ in range(3)]
    engine = QueryEngine(artifact, default_limit=4)
    for text in texts:
        shaped, full = both(artifact, big_db, engine, text, default_limit=4)
        assert shaped == full, text
    assert engine.shapes.misses <= 3


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(texts=st.lists(query_text(), min_size=1, max_size=3))
def test_any_texts_give_what_their_full_parse_gives(artifact, db, texts):
    engine = QueryEngine(artifact)
    for text in texts:
        shaped, full = both(artifact, db, engine, text)
        assert shaped == full, text
