"""Table and column names that need quoting, `%` above all, on both backends (issue 6, item 10).

PyMySQL and psycopg2 %-format a statement given parameters; a `%` in a name
once broke the MySQL filter pushdown ("not enough arguments for format
string"). Every statement here holds such names: introspection, plain reads,
reads with a schema-config `where` pushed down to the source, and a whole
build and snapshot load through app/build and app/instance.
"""

from __future__ import annotations

import json
import secrets
from functools import partial

import pytest

from app.build import build_artifact, compile_artifact
from app.instance.snapshot import Snapshot, source_filter
from app.query import execute
from app.sources import open_source
from tests import servers
from tests.sources.blog import (
    CHILD_ROWS,
    CHILD_TABLE,
    ODD_COLUMNS,
    ODD_FIELDS,
    ODD_ROWS,
    ODD_TABLE,
    odd_config,
    quote,
    read_all,
)

FIELDS = ["id", *(ODD_FIELDS[name] for name in ODD_COLUMNS[1:])]
# The odd rows as a query answers them: JSON parsed.
ODD = [{**dict(zip(FIELDS, row, strict=True)), "j": None if row[-1] is None else json.loads(row[-1])}
       for row in ODD_ROWS]


def test_introspected(source, backend):
    schema = source.introspect()
    for name in (ODD_TABLE, CHILD_TABLE):
        assert schema.table(name) == backend.expected_tables[name]
    assert set(source.row_count_estimates()) == set(backend.expected_tables)


def test_streamed(source):
    artifact = compile_artifact(source.introspect(), odd_config())
    assert sorted(read_all(source, artifact.table("odd"))) == ODD_ROWS
    assert sorted(read_all(source, artifact.table("child")),
                  key=lambda row: row[0]) == CHILD_ROWS


WHERES = [
    # (schema-config where on the odd table, ids it keeps)
    ("pct_s >= 20", [2, 3]),
    ('a_pct_b LIKE "%b"', [1]),
    ('a_pct_b LIKE "%\\%"', [3]),
    ('pct_pct = "%%" OR pct_x = "%(y)s"', [1, 3]),
    ("pct_s IN (10, 30) AND NOT (pct_s BETWEEN 20 AND 25)", [1, 3]),
    # No parameter at all: the statement must still be %-formatted once.
    ("a_pct_b IS NOT NULL AND pct_pct IS NOT NULL AND pct_x IS NOT NULL AND dq IS NOT NULL "
     "AND bt IS NOT NULL AND has_space IS NOT NULL", [1, 2]),
    ("j IS NULL", [2]),
]


@pytest.mark.parametrize("where, ids", WHERES, ids=[where for where, _ in WHERES])
def test_streamed_with_the_where_pushed_down(source, backend, where, ids):
    artifact = compile_artifact(source.introspect(), odd_config(odd_where=where))
    table = artifact.table("odd")
    pushed = source_filter(table, backend.name)      # what the instance's loader sends
    assert read_all(source, table, where=pushed) == [row for row in ODD_ROWS if row[0] in ids]


def test_child_where_on_a_foreign_key_column(source, backend):
    artifact = compile_artifact(source.introspect(), odd_config(child_where="parent_id = 1"))
    table = artifact.table("child")
    rows = read_all(source, table, where=source_filter(table, backend.name))
    assert sorted(rows) == [(1, 1), (2, 1)]


def test_built_and_loaded_into_a_snapshot(backend):
    config = odd_config(odd_where='pct_s <= 10 OR pct_x = "%(y)s"',
                        child_where="parent_id IS NOT NULL")
    artifact, _ = build_artifact(backend.credentials, config)
    with open_source(backend.credentials) as source:
        snapshot = Snapshot.load(artifact, source)
    try:
        assert snapshot.row_counts == {"odd": 2, "child": 3}
        answer = execute(artifact, snapshot.connection,
                         f"odd {{ {' '.join(FIELDS)} child {{ id parent_id }} }}")
        assert answer == [
            {**ODD[0], "child": [{"id": 1, "parent_id": 1}, {"id": 2, "parent_id": 1}]},
            {**ODD[2], "child": []}]
        assert execute(artifact, snapshot.connection,
                       'odd(a_pct_b LIKE "%\\%" OR pct_x = "%(x)s") { id }') == [{"id": 1},
                                                                                 {"id": 3}]
    finally:
        snapshot.close()


@pytest.fixture(params=["mysql", "postgres"])
def odd_schema(request):
    """Credentials for a database (MariaDB) or schema (PostgreSQL) with an odd name of its own."""
    backend = request.param
    schema = f"rx_src_{secrets.token_hex(4)} %s %% `\"q\""
    q = partial(quote, backend=backend)
    admin = servers.connect_mariadb() if backend == "mysql" else servers.connect_postgres()
    create = "CREATE DATABASE" if backend == "mysql" else "CREATE SCHEMA"
    drop = "DROP DATABASE" if backend == "mysql" else "DROP SCHEMA"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"{create} {q(schema)}", ())
            cursor.execute(f"CREATE TABLE {q(schema)}.{q('t%s')} ({q('id')} INT PRIMARY KEY, "
                           f"{q('v%')} INT NOT NULL)", ())
            cursor.execute(f"INSERT INTO {q(schema)}.{q('t%s')} VALUES (1, 10), (2, 20)", ())
        yield (servers.mariadb() if backend == "mysql" else servers.postgres()).credentials(schema)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"{drop} IF EXISTS {q(schema)}{'' if backend == 'mysql' else ' CASCADE'}",
                           ())
        admin.close()


def test_a_schema_name_with_percent_signs(odd_schema):
    with open_source(odd_schema) as source:
        source.check_access()
        artifact = compile_artifact(source.introspect(), {
            "version": 1, "tables": [{"name": "t%s", "alias": "t", "where": "v_pct >= 20",
                                      "field_aliases": {"v%": "v_pct"}}]})
        table = artifact.table("t")
        assert read_all(source, table) == [(1, 10), (2, 20)]
        assert read_all(source, table, where=source_filter(table, odd_schema.backend)) == [(2, 20)]
