"""`PooledStore.execute_at_commit`: a transaction's last statement sent in its COMMIT's round trip.

Real PostgreSQL: a store made from the test database's URL, a probe table, and a second
connection that looks at what is committed.
"""

from __future__ import annotations

import psycopg2
import pytest
from peewee import IntegrityError

from app.storage.database import make_database
from tests.conftest import PG_URL

INSERT = "INSERT INTO at_commit_probe (n) VALUES (%s)"


@pytest.fixture
def pg_store(tmp_path):
    database = make_database(PG_URL, tmp_path)
    with database.connection_context():
        database.execute_sql("DROP TABLE IF EXISTS at_commit_probe")
        database.execute_sql("CREATE TABLE at_commit_probe (n integer PRIMARY KEY)")
    yield database
    with database.connection_context():
        database.execute_sql("DROP TABLE at_commit_probe")
    database.close_all()


@pytest.fixture
def committed():
    """The probe's rows as another session sees them."""
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True

    def rows() -> list[int]:
        with conn.cursor() as cur:
            cur.execute("SELECT n FROM at_commit_probe ORDER BY n")
            return [n for (n,) in cur.fetchall()]

    yield rows
    conn.close()


@pytest.fixture
def sent(pg_store, monkeypatch):
    """The text of every statement the store's cursors execute."""
    texts: list[str] = []
    make_cursor = pg_store.cursor

    class Watched:
        def __init__(self, cursor):
            self._cursor = cursor

        def execute(self, query, params=None):
            texts.append(query.decode() if isinstance(query, bytes) else query)
            return self._cursor.execute(query, params)

        def __getattr__(self, name):
            return getattr(self._cursor, name)

    monkeypatch.setattr(pg_store, "cursor", lambda *a, **k: Watched(make_cursor(*a, **k)))
    return texts


def test_it_goes_out_with_the_commit_in_one_round_trip(pg_store, committed, sent):
    with pg_store.connection_context():
        with pg_store.atomic():
            pg_store.execute_sql(INSERT, (1,))
            pg_store.execute_at_commit(INSERT, (2,))
            assert committed() == []
            assert sent == ["BEGIN", INSERT]            # the second INSERT waits
        assert sent == ["BEGIN", INSERT, "INSERT INTO at_commit_probe (n) VALUES (2); COMMIT"]
    assert committed() == [1, 2]


def test_a_rollback_drops_it(pg_store, committed):
    with pg_store.connection_context():
        with pytest.raises(RuntimeError), pg_store.atomic():
            pg_store.execute_at_commit(INSERT, (1,))
            raise RuntimeError("refused")
        with pg_store.atomic():                         # the next transaction does not send it
            pg_store.execute_sql(INSERT, (2,))
    assert committed() == [2]


def test_outside_a_transaction_or_inside_a_savepoint_it_runs_now(pg_store, committed):
    with pg_store.connection_context():
        pg_store.execute_at_commit(INSERT, (1,))
        assert committed() == [1]
        with pg_store.atomic():
            with pytest.raises(RuntimeError), pg_store.atomic():    # a savepoint
                pg_store.execute_at_commit(INSERT, (2,))
                raise RuntimeError("refused")
            pg_store.execute_sql(INSERT, (3,))
    assert committed() == [1, 3]


def test_its_error_reaches_the_caller_from_the_commit_and_rolls_everything_back(pg_store, committed):
    with pg_store.connection_context():
        pg_store.execute_sql(INSERT, (1,))
        with pytest.raises(IntegrityError), pg_store.atomic():
            pg_store.execute_sql(INSERT, (2,))
            pg_store.execute_at_commit(INSERT, (1,))    # a duplicate key
        assert pg_store.execute_sql("SELECT 1").fetchone() == (1,)   # the connection still works
    assert committed() == [1]
