"""DATABASE_URL to a store: every PostgreSQL URL pooled with our timeouts, SQLite with its pragmas."""

from __future__ import annotations

import sqlite3

import pytest
from peewee import SqliteDatabase
from playhouse.pool import PooledPostgresqlDatabase

from app.storage.database import make_database
from tests.conftest import PG_URL


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+pool", "postgres+pool"])
def test_every_postgresql_url_is_pooled(tmp_path, scheme):
    database = make_database(PG_URL.replace("postgresql", scheme, 1), tmp_path, pool_size=7)
    assert type(database) is PooledPostgresqlDatabase
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
