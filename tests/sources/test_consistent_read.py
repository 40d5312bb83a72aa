"""A load reads every table from one point-in-time view of the source."""

from __future__ import annotations

import secrets

import pytest

from app.build.compile import compile_artifact
from app.sources import open_source
from tests import servers
from tests.servers import connect_mariadb, connect_postgres
from tests.sources.blog import read_all


@pytest.fixture
def mariadb_pair():
    schema = f"rx_src_{secrets.token_hex(4)}"
    admin = connect_mariadb()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {schema}")
        cur.execute(f"CREATE TABLE {schema}.a (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        cur.execute(f"CREATE TABLE {schema}.b (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {schema}.a VALUES (1, 1), (2, 1)")
        cur.execute(f"INSERT INTO {schema}.b VALUES (1, 1), (2, 1)")
    yield servers.mariadb().credentials(schema), admin, f"UPDATE {schema}.b SET v = 2"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {schema}")
    admin.close()


@pytest.fixture
def postgres_pair():
    schema = f"rx_src_{secrets.token_hex(4)}"
    admin = connect_postgres()
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"CREATE TABLE {schema}.a (id INT PRIMARY KEY, v INT)")
        cur.execute(f"CREATE TABLE {schema}.b (id INT PRIMARY KEY, v INT)")
        cur.execute(f"INSERT INTO {schema}.a VALUES (1, 1), (2, 1)")
        cur.execute(f"INSERT INTO {schema}.b VALUES (1, 1), (2, 1)")
    yield servers.postgres().credentials(schema), admin, f"UPDATE {schema}.b SET v = 2"
    with admin.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin.close()


@pytest.mark.parametrize("pair", ["mariadb_pair", "postgres_pair"])
def test_a_change_during_the_load_is_not_half_seen(request, pair):
    credentials, admin, change = request.getfixturevalue(pair)
    with open_source(credentials) as source:
        artifact = compile_artifact(source.introspect())
        a, b = artifact.table("a"), artifact.table("b")
        with source.consistent_read():
            rows_a = read_all(source, a)
            with admin.cursor() as cur:     # another client commits between the two tables
                cur.execute(change)
            rows_b = read_all(source, b)
        assert rows_a == [(1, 1), (2, 1)]
        assert rows_b == [(1, 1), (2, 1)]   # the view from before the change
        # A new read afterwards sees the change.
        assert read_all(source, b) == [(1, 2), (2, 2)]
