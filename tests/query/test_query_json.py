"""The JSON statement (app.query.jsonsql): SQLite writes the bytes the Python path encodes, or declines."""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.contracts.artifact import Column, Relation, SchemaArtifact, Table
from app.query import QueryEngine, QueryError, QueryLimitError, SharedConnection, executor
from app.query.executor import answer_json
from tests.query.conftest import SMALL_DATA, build_snapshot, make_artifact, make_big_data

ARTIFACT = make_artifact()


def _shared(source: sqlite3.Connection) -> SharedConnection:
    connection = sqlite3.connect(":memory:", factory=SharedConnection, check_same_thread=False)
    source.backup(connection)
    connection.enforce_time_budget()
    return connection


@pytest.fixture(scope="module")
def small():
    return _shared(build_snapshot(ARTIFACT, SMALL_DATA))


@pytest.fixture(scope="module")
def big():
    return _shared(build_snapshot(ARTIFACT, make_big_data(120)))


def both(engine: QueryEngine, connection, text: str) -> tuple[bytes | None, bytes]:
    return engine.answer_json(connection, text), orjson.dumps(engine.answer(connection, text).objects)


SERVED = [
    "posts { id title }",
    "posts(published = true) { id title author { name } comments(approved = true) { body } "
    "LIMIT 2 OFFSET 1 }",
    "posts(id = 10) { id title author { name } comments { body } }",
    "users { id name age active joined email plan }",
    "users { id reports { id name } manager { name manager { name } } }",
    "posts { id comments { id body LIMIT 1 OFFSET 1 } }",
    "posts { id comments { id ORDER BY id DESC LIMIT 1 } }",
    "posts { id comments { id OFFSET 1 } }",
    "badges { id holder { name } }",
    "org_users { name badges { label } }",
    "events { kind at user { name } }",
    "posts(title LIKE \"H%\") { title created_at }",
    "posts(author.name = \"Ada\") { id author { name posts { id } } }",
    "users { id name ORDER BY name DESC LIMIT 2 OFFSET 3 }",
    "users(id > 99) { id posts { id } }",
    "users { `name` }",
    "post_tags { post { title } tag { name } }",
    "users { name posts(published = false) { title comments { body author { name } } } }",
]


@pytest.mark.parametrize("text", SERVED)
def test_sqlite_writes_what_the_python_path_encodes(small, text):
    engine = QueryEngine(ARTIFACT)
    written, encoded = both(engine, small, text)
    assert written == encoded


@pytest.mark.parametrize("text", [
    "users { id score }",          # decimal: SQLite writes REAL values otherwise
    "users { prefs }",             # json: re-encoded by the Python path
    "users { avatar }",            # binary: base64
    "users { * }",
    "files { name parts { n } }",  # a binary key
])
def test_plans_sqlite_cannot_write_take_the_python_path(small, text):
    assert QueryEngine(ARTIFACT).plan(text)[0].json_sql is None
    assert QueryEngine(ARTIFACT).answer_json(small, text) is None


def test_a_value_of_another_storage_class_sends_the_query_to_the_python_path():
    source = build_snapshot(ARTIFACT, {
        "app_users": [(1, "Ada", None, None, 2.5, 1, None, None, None, None, None, None),
                      (2, "Bob", None, None, b"\x01", "yes", None, None, None, None, None, None),
                      (3, "Cy", None, None, "old", 7, None, None, None, None, None, None)]})
    connection = _shared(source)
    engine = QueryEngine(ARTIFACT)
    for text in ("users(id = 1) { age }", "users(id = 2) { age }", "users(id = 2) { active }"):
        assert engine.answer_json(connection, text) is None, text
    # Text in an integer column and any non-zero boolean are written as Python does.
    for text in ("users(id = 3) { age active }", "users(id = 1) { active }"):
        written, encoded = both(engine, connection, text)
        assert written == encoded, text
    assert engine.answer_json(connection, "users(id = 3) { age active }") == \
        b'[{"age":"old","active":true}]'


def test_text_is_escaped_as_orjson_does():
    text = "".join(map(chr, range(0x80))) + "\u2028\u00e9\U0001f600\ufeff\\\"'"
    connection = _shared(build_snapshot(ARTIFACT, {"tags": [(1, text)]}))
    written, encoded = both(QueryEngine(ARTIFACT), connection, "tags { id name }")
    assert written == encoded


def test_near_the_answer_limits_the_python_path_decides(big):
    engine = QueryEngine(ARTIFACT)
    text = "users { id posts { id comments { body } } }"
    assert engine.answer_json(big, text) is not None
    for limits in ({"max_answer_rows": 1000}, {"max_answer_bytes": 20_000}):
        small_engine = QueryEngine(ARTIFACT, **limits)
        assert small_engine.answer_json(big, text) is None
        with pytest.raises(QueryError):
            small_engine.answer(big, text)


def test_a_string_past_the_byte_limit_stops_the_statement(big):
    engine = QueryEngine(ARTIFACT, max_answer_bytes=1024)
    plan, values = engine.plan("users { id posts { id comments { body } } }")
    assert answer_json(plan, big, engine.limits, values) is None
    # The connection's own length limit is back afterwards.
    assert big.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) > 1024


def test_answers_longer_than_sqlite_writes_take_the_python_path(big, monkeypatch):
    engine = QueryEngine(ARTIFACT)
    text = "users { id posts { id comments { body } } }"
    body = engine.answer_json(big, text)
    monkeypatch.setattr(executor, "JSON_MAX_BYTES", len(body) - 1)
    assert engine.answer_json(big, text) is None
    assert orjson.dumps(engine.respond(big, text).objects) == body


def test_sqlite_out_of_memory_takes_the_python_path(big):
    engine = QueryEngine(ARTIFACT)
    text = "users { id posts { id comments { body } } }"
    expected = engine.answer_json(big, text)
    # A reader's SQLite heap limit (app/instance/memory.py, process-wide), with less room
    # than the answer's string needs.
    sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    sqlite.sqlite3_memory_used.restype = sqlite.sqlite3_hard_heap_limit64.restype = ctypes.c_int64
    sqlite.sqlite3_hard_heap_limit64.argtypes = [ctypes.c_int64]
    before = sqlite.sqlite3_hard_heap_limit64(sqlite.sqlite3_memory_used() + len(expected) // 2)
    try:
        assert engine.answer_json(big, text) is None
    finally:
        sqlite.sqlite3_hard_heap_limit64(before)
    assert engine.answer_json(big, text) == expected
    assert orjson.dumps(engine.answer(big, text).objects) == expected


def test_both_paths_share_one_time_budget(small):
    engine = QueryEngine(ARTIFACT)
    started = time.monotonic() - engine.limits.query_timeout_ms / 1000
    for attempt in (engine.answer_json, engine.answer):
        with pytest.raises(QueryLimitError) as refused:
            attempt(small, "posts { id }", started=started)
        assert refused.value.limit == "queryTimeoutMs"


def test_respond_gives_the_bytes_or_the_python_path_s_answer(small):
    engine = QueryEngine(ARTIFACT)
    assert engine.respond(small, "tags { id }") == b'[{"id":1},{"id":2},{"id":3}]'
    assert engine.respond(small, "users(id = 2) { score }").objects == [{"score": 3.25}]


def test_selections_too_deep_for_sqlite_s_parser_take_the_python_path(small):
    engine = QueryEngine(ARTIFACT)
    names = ["posts" if i % 2 == 0 else "author" for i in range(9)]
    text = "users { " + "".join(name + " { " for name in names) + "id" + " }" * 10
    assert engine.plan(text)[0].json_sql is not None
    for _ in range(2):  # the second time without asking SQLite
        assert engine.answer_json(small, text) is None
    assert engine.respond(small, text).objects == engine.answer(small, text).objects


def test_a_plain_connection_takes_the_python_path():
    connection = build_snapshot(ARTIFACT, SMALL_DATA)
    assert QueryEngine(ARTIFACT).answer_json(connection, "posts { id }") is None


def test_shapes_bind_the_statement_values(small):
    engine = QueryEngine(ARTIFACT)
    for offset in range(4):
        for post in (10, 12, 99):
            text = (f"posts(id >= {post}) {{ id comments(id > {post * 10}) {{ id LIMIT 1 OFFSET "
                    f"{offset % 2} }} LIMIT 3 OFFSET {offset} }}")
            written, encoded = both(engine, small, text)
            assert written == encoded, text
    assert engine.shapes.hits > 0


# -- fuzz: generated queries over the artifact ---------------------------------

def _fields(table):
    return [column.field for column in table.columns if not column.hidden]


_PREDICATES = st.sampled_from(["id > 12", "id <= 104", "id IN (1, 10, 101)", "published = true",
                               "approved = false", "name LIKE \"%a%\"", "title IS NOT NULL",
                               "author.name = \"Ada\"", "post.published = true", "n = 0"])


@st.composite
def _selection(draw, table_alias: str, depth: int = 0, many: bool = True):
    table = ARTIFACT.table(table_alias)
    entries = draw(st.lists(st.sampled_from(_fields(table)), min_size=1, max_size=4, unique=True))
    relations = ARTIFACT.relations_of(table_alias)
    if depth < 3 and relations:
        for relation in draw(st.lists(st.sampled_from(relations), max_size=2,
                                      unique_by=lambda r: r.name)):
            entries.append(relation.name + " " + draw(_selection(relation.target, depth + 1,
                                                                 relation.many)))
    text = ""
    if draw(st.booleans()):
        text += f"({draw(_PREDICATES)})"
    text += " { " + " ".join(entries)
    if many:
        if draw(st.booleans()):
            text += f" ORDER BY {draw(st.sampled_from(_fields(table)))} DESC"
        if draw(st.booleans()):
            text += f" LIMIT {draw(st.integers(0, 4))}"
        if draw(st.booleans()):
            text += f" OFFSET {draw(st.integers(0, 3))}"
    return text + " }"


queries = st.sampled_from([t.alias for t in ARTIFACT.tables]).flatmap(
    lambda alias: _selection(alias).map(lambda body: alias + body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=queries)
def test_fuzz_the_json_statement_agrees_with_the_python_path(small, big, text):
    engine = QueryEngine(ARTIFACT)
    for connection in (small, big):
        try:
            encoded = orjson.dumps(engine.answer(connection, text).objects)
        except QueryError:
            continue  # a filter on a field the table lacks, say: no answer to compare
        written = engine.answer_json(connection, text)
        assert written is None or written == encoded, text


def test_odd_names_are_quoted_and_keys_encoded():
    parent, child, link = 'we"ird %s \'t\'', "ch%(x)s", "pa'rent"
    artifact = SchemaArtifact(backend="postgres", schema="s", tables=(
        Table(name=parent, alias="odd", primary_key=("i d",), columns=(
            Column("i d", "integer", field='k"%s\\'), Column("j\x01ü", "text", field="ü\n"))),
        Table(name=child, alias="kids", primary_key=("id",), columns=(
            Column("id", "integer"), Column(link, "integer"), Column("%", "boolean")))),
        relations=(
            Relation(table="kids", name="parent", target="odd", columns=(link,),
                     target_columns=("i d",), many=False),
            Relation(table="odd", name="kids", target="kids", columns=("i d",),
                     target_columns=(link,), many=True)))
    connection = sqlite3.connect(":memory:", factory=SharedConnection, check_same_thread=False)

    def q(name):
        return '"' + name.replace('"', '""') + '"'

    connection.execute(f"CREATE TABLE {q(parent)} ({q('i d')} INTEGER PRIMARY KEY, "
                       f"{q('j' + chr(1) + 'ü')} TEXT)")
    connection.execute(f"CREATE TABLE {q(child)} (id INTEGER PRIMARY KEY, {q(link)} INTEGER, "
                       f"{q('%')} INTEGER)")
    connection.executemany(f"INSERT INTO {q(parent)} VALUES (?, ?)", [(1, "a%sb"), (2, None)])
    connection.executemany(f"INSERT INTO {q(child)} VALUES (?, ?, ?)",
                           [(1, 1, 1), (2, 1, 0), (3, 2, None)])
    engine = QueryEngine(artifact)
    text = 'odd(`ü\n` LIKE "a%") { `k"%s\\` `ü\n` kids(`%` = true) { id `%` parent { `ü\n` } } }'
    written, encoded = both(engine, connection, text)
    assert written == encoded
    assert orjson.loads(written) == [{'k"%s\\': 1, "ü\n": "a%sb", "kids": [
        {"id": 1, "%": True, "parent": {"ü\n": "a%sb"}}]}]
