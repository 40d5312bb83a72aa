"""A load reads every table from one point-in-time view of the source."""

from __future__ import annotations

import pytest

from app.build.compile import compile_artifact
from app.sources import SourceCredentials, open_source
from tests.sources.conftest import MARIADB, POSTGRES, connect_mariadb, connect_postgres

SCHEMA = "rx_src_consistent"


@pytest.fixture
def mariadb_pair():
    admin = connect_mariadb()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
        cur.execute(f"CREATE DATABASE {SCHEMA}")
        cur.execute(f"CREATE TABLE {SCHEMA}.a (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        cur.execute(f"CREATE TABLE {SCHEMA}.b (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {SCHEMA}.a VALUES (1, 1), (2, 1)")
        cur.execute(f"INSERT INTO {SCHEMA}.b VALUES (1, 1), (2, 1)")
    credentials = SourceCredentials(backend="mysql", host=MARIADB["host"], port=MARIADB["port"],
                                    user=MARIADB["user"], password=MARIADB["password"], schema=SCHEMA)
    yield credentials, admin, f"UPDATE {SCHEMA}.b SET v = 2"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCHEMA}")
    admin.close()


@pytest.fixture
def postgres_pair():
    admin = connect_postgres()
    with admin.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cur.execute(f"CREATE SCHEMA {SCHEMA}")
        cur.execute(f"CREATE TABLE {SCHEMA}.a (id INT PRIMARY KEY, v INT)")
        cur.execute(f"CREATE TABLE {SCHEMA}.b (id INT PRIMARY KEY, v INT)")
        cur.execute(f"INSERT INTO {SCHEMA}.a VALUES (1, 1), (2, 1)")
        cur.execute(f"INSERT INTO {SCHEMA}.b VALUES (1, 1), (2, 1)")
    credentials = SourceCredentials(backend="postgres", host=POSTGRES["host"], port=POSTGRES["port"],
                                    user=POSTGRES["user"], password=POSTGRES["password"], schema=SCHEMA,
                                    database=POSTGRES["dbname"])
    yield credentials, admin, f"UPDATE {SCHEMA}.b SET v = 2"
    with admin.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    admin.close()


@pytest.mark.parametrize("pair", ["mariadb_pair", "postgres_pair"])
def test_a_change_during_the_load_is_not_half_seen(request, pair):
    credentials, admin, change = request.getfixturevalue(pair)
    with open_source(credentials) as source:
        artifact = compile_artifact(source.introspect())
        a, b = artifact.table("a"), artifact.table("b")
        with source.consistent_read():
            rows_a = [row for batch in source.stream_rows(a) for row in batch]
            with admin.cursor() as cur:     # another client commits between the two tables
                cur.execute(change)
            rows_b = [row for batch in source.stream_rows(b) for row in batch]
        assert rows_a == [(1, 1), (2, 1)]
        assert rows_b == [(1, 1), (2, 1)]   # the view from before the change
        # A new read afterwards sees the change.
        assert [row for batch in source.stream_rows(b) for row in batch] == [(1, 2), (2, 2)]
