"""DATABASE_URL to a store: every PostgreSQL URL pooled with our timeouts, SQLite with its pragmas."""

from __future__ import annotations

import sqlite3

import psycopg2
import pytest
from peewee import OperationalError, SqliteDatabase

from app.storage.database import PooledStore, make_database
from tests.conftest import PG_ADMIN_DSN, PG_URL


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+pool", "postgres+pool"])
def test_every_postgresql_url_is_pooled(tmp_path, scheme):
    database = make_database(PG_URL.replace("postgresql", scheme, 1), tmp_path, pool_size=7)
    assert type(database) is PooledStore
    assert (database._max_connections, database._stale_timeout, database._wait_timeout) == (7, 300, 30)
    with database.connection_context():
        assert database.connection().get_dsn_parameters()["connect_timeout"] == "5"
        assert database.execute_sql("SELECT 1").fetchone() == (1,)
    database.close_all()


def test_options_in_the_url_win_over_the_defaults(tmp_path):
    database = make_database(f"{PG_URL}?connect_timeout=9&application_name=cp", tmp_path)
    with database.connection_context():
        parameters = database.connection().get_dsn_parameters()
        assert (parameters["connect_timeout"], parameters["application_name"]) == ("9", "cp")
    database.close_all()


@pytest.mark.parametrize("url", [None, "", "sqlite:///{tmp}/store.sqlite3"])
def test_sqlite_has_its_pragmas_and_takes_the_write_lock_up_front(tmp_path, url):
    database = make_database(url and url.format(tmp=tmp_path), tmp_path)
    assert type(database) is SqliteDatabase
    path = database.database
    assert path == str(tmp_path / ("store.sqlite3" if url else "reflexdb.sqlite3"))
    with database.connection_context():
        pragmas = [database.execute_sql(f"PRAGMA {name}").fetchone()[0]
                   for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")]
        assert pragmas == ["wal", 1, 15000, 1]    # synchronous=normal is 1
        with database.atomic():
            # BEGIN IMMEDIATE: the transaction holds the write lock before it writes anything.
            other = sqlite3.connect(path, timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()


@pytest.mark.parametrize("url,message", [
    ("mysql://root:hunter2@db/x", "DATABASE_URL scheme 'mysql' is not supported; use postgresql:// or sqlite://"),
    ("postgresql://root:hunter2@db", "DATABASE_URL names no database: postgresql://user@host/<database> "
                                     "or sqlite:///<path>"),
])
def test_refused_urls_are_named_without_their_password(tmp_path, url, message):
    with pytest.raises(ValueError) as caught:
        make_database(url, tmp_path)
    assert str(caught.value) == message


def _backend_pid(database) -> int:
    return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def _terminate(pid: int) -> None:
    killer = psycopg2.connect(PG_ADMIN_DSN)
    killer.autocommit = True
    with killer.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits until it is gone
        assert cur.fetchone() == (True,)
    killer.close()


def test_a_checkout_sends_no_statement(tmp_path):
    database = make_database(PG_URL, tmp_path, pool_size=2)
    sent = []
    database.query_hooks.append(lambda event: sent.append(event.sql))
    with database.connection_context():
        pid = _backend_pid(database)
    with database.connection_context():
        assert _backend_pid(database) == pid        # the same pooled connection...
    assert sent == ["SELECT pg_backend_pid()"] * 2  # ...handed out without a `SELECT 1`
    database.close_all()


def test_a_connection_lost_in_the_pool_is_replaced_at_the_first_statement(tmp_path):
    database = make_database(PG_URL, tmp_path, pool_size=2)
    with database.connection_context():
        lost = _backend_pid(database)
    _terminate(lost)                                # the store drops it while it sits in the pool
    with database.connection_context():
        assert _backend_pid(database) != lost
    with database.connection_context(), database.atomic():   # BEGIN first, on a lost connection
        pid = _backend_pid(database)
    _terminate(pid)
    with database.connection_context(), database.atomic():
        assert _backend_pid(database) != pid
        assert database.execute_sql("SELECT 2").fetchone() == (2,)
    database.close_all()


def test_a_connection_lost_after_the_first_statement_is_an_error(tmp_path):
    database = make_database(PG_URL, tmp_path, pool_size=2)
    with database.connection_context():
        _terminate(_backend_pid(database))
        # The first statement may have done work the lost connection took with it: never resent.
        with pytest.raises(OperationalError):
            database.execute_sql("SELECT 1")
    database.close_all()
