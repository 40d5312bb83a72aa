"""Statements sent from the event loop on psycopg2's asynchronous connections (the key lookup's path).

Real PostgreSQL: a store made from the test database's URL, driven with asyncio directly.
"""

from __future__ import annotations

import asyncio
import threading

import psycopg2
import pytest
from peewee import OperationalError, ProgrammingError

from app.storage import loop_statements
from app.storage.database import make_database, store_unavailable
from app.storage.loop_statements import Busy, LoopStatements
from tests.conftest import PG_ADMIN_DSN, PG_URL, free_port


@pytest.fixture
def pg_store(tmp_path):
    database = make_database(PG_URL, tmp_path)
    yield database
    database.close_all()


def _terminate(pid: int) -> None:
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))   # waits until it is gone
    conn.close()


def _idle_pids(statements: LoopStatements) -> list[int]:
    return [conn.info.backend_pid for _, conn in statements._idle]


def test_rows_come_back_and_the_connection_is_kept_for_the_next_statement(pg_store):
    statements = LoopStatements(pg_store, size=2)

    async def two():
        first = await statements.fetch("SELECT %s::int + 1, pg_backend_pid()", [41])
        second = await statements.fetch("SELECT pg_backend_pid()", [])
        return first, second

    first, second = asyncio.run(two())
    assert first[0][0] == 42
    assert second[0][0] == first[0][1]          # the same connection, reused
    assert _idle_pids(statements) == [first[0][1]] and statements._taken == 0


def test_a_statement_without_rows_answers_none_and_a_bad_one_raises_peewees_error(pg_store):
    statements = LoopStatements(pg_store)
    assert asyncio.run(statements.fetch("SET application_name = 'x'", [])) == []
    with pytest.raises(ProgrammingError) as caught:
        asyncio.run(statements.fetch("SELECT * FROM no_such_table", []))
    assert isinstance(caught.value.orig, psycopg2.errors.UndefinedTable)
    assert not store_unavailable(caught.value)
    assert statements._taken == 0 and statements._idle == []   # an error's connection is not kept


def test_when_every_connection_is_busy_nothing_is_sent(pg_store):
    statements = LoopStatements(pg_store, size=1)

    async def both():
        slow = asyncio.ensure_future(statements.fetch("SELECT pg_sleep(0.3)", []))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await statements.fetch("SELECT 1", [])
        await slow
        return await statements.fetch("SELECT 1", [])

    assert asyncio.run(both()) == [(1,)]


def test_a_connection_the_server_dropped_while_idle_is_replaced_once(pg_store):
    statements = LoopStatements(pg_store, size=2)

    async def twice():
        await asyncio.gather(statements.fetch("SELECT pg_sleep(0.05)", []),
                             statements.fetch("SELECT pg_sleep(0.05)", []))
        lost = _idle_pids(statements)
        for pid in lost:
            _terminate(pid)                     # the store drops both while they sit idle
        pid = (await statements.fetch("SELECT pg_backend_pid()", []))[0][0]
        return lost, pid

    lost, pid = asyncio.run(twice())
    assert len(lost) == 2 and pid not in lost
    assert _idle_pids(statements) == [pid]      # the other dead one was dropped, not kept


def test_a_statement_the_store_refuses_on_a_working_connection_is_not_sent_again(pg_store):
    statements = LoopStatements(pg_store, size=1)

    async def refused():
        await statements.fetch("SET statement_timeout = 50", [])    # kept on the one connection
        return await statements.fetch("SELECT pg_sleep(1)", [])

    # Sent again on a new connection (no statement_timeout there), it would answer a row.
    with pytest.raises(OperationalError) as caught:
        asyncio.run(refused())
    assert isinstance(caught.value.orig, psycopg2.errors.QueryCanceled)
    assert statements._taken == 0 and statements._idle == []


def test_an_idle_connection_past_the_stale_timeout_is_closed_not_reused(pg_store):
    statements = LoopStatements(pg_store)
    statements.stale_timeout = 0.0
    first = asyncio.run(statements.fetch("SELECT pg_backend_pid()", []))[0][0]
    kept = statements._idle[0][1]
    second = asyncio.run(statements.fetch("SELECT pg_backend_pid()", []))[0][0]
    assert first != second and kept.closed


def test_a_statement_past_its_timeout_is_a_store_error_and_its_connection_closed(pg_store, monkeypatch):
    monkeypatch.setattr(loop_statements, "STATEMENT_TIMEOUT", 0.2)
    statements = LoopStatements(pg_store)
    with pytest.raises(OperationalError) as caught:
        asyncio.run(statements.fetch("SELECT pg_sleep(5)", []))
    assert str(caught.value) == "the store did not answer within 0.2 s"
    assert store_unavailable(caught.value)
    assert statements._taken == 0 and statements._idle == []


def test_a_cancelled_statement_closes_its_connection_and_frees_its_place(pg_store):
    statements = LoopStatements(pg_store, size=1)

    async def cancel():
        task = asyncio.ensure_future(statements.fetch("SELECT pg_sleep(5)", []))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await statements.fetch("SELECT 1", [])

    assert asyncio.run(cancel()) == [(1,)]


def test_an_unreachable_store_is_named_like_the_blocking_drivers_error(tmp_path):
    port = free_port()   # nothing listens there
    database = make_database(PG_URL.replace(":5432/", f":{port}/"), tmp_path)
    statements = LoopStatements(database)
    with pytest.raises(OperationalError) as caught:
        asyncio.run(statements.fetch("SELECT 1", []))
    assert str(caught.value).startswith(f'connection to server at "127.0.0.1", port {port} failed: '
                                        "Connection refused")
    assert store_unavailable(caught.value)
    assert statements._taken == 0


def test_a_store_that_does_not_answer_the_connect_times_out(tmp_path):
    import socket
    silent = socket.create_server(("127.0.0.1", 0))      # accepts, never speaks
    port = silent.getsockname()[1]
    try:
        database = make_database(PG_URL.replace(":5432/", f":{port}/") + "?connect_timeout=1", tmp_path)
        with pytest.raises(OperationalError) as caught:
            asyncio.run(LoopStatements(database).fetch("SELECT 1", []))
    finally:
        silent.close()
    assert str(caught.value) == (f'connection to server at "127.0.0.1", port {port} failed: '
                                 "timeout expired after 1 s")


def test_one_set_per_store_and_process_none_for_sqlite(pg_store, tmp_path):
    from app.storage.database import db, init_database
    previous = db.obj
    try:
        init_database(pg_store)
        first = loop_statements.for_store()
        assert loop_statements.for_store() is first and first.store is pg_store
        seen = []
        thread = threading.Thread(target=lambda: seen.append(loop_statements.for_store()))
        thread.start()
        thread.join()
        assert seen == [first]                  # threads share it; only a forked child makes its own
        init_database(make_database(None, tmp_path))
        assert loop_statements.for_store() is None
    finally:
        init_database(previous)


def test_a_forked_child_makes_its_own_and_leaves_the_parents_alone(pg_store):
    import gc
    import os

    from app.storage.database import db, init_database
    previous = db.obj
    try:
        init_database(pg_store)
        parent = loop_statements.for_store()
        pid = asyncio.run(parent.fetch("SELECT pg_backend_pid()", []))[0][0]
        child = os.fork()
        if child == 0:   # the child: its own set; the parent's connection is not closed from here
            own = loop_statements.for_store() is not parent
            del parent
            gc.collect()   # a dropped copy of the parent's connection would end its session now
            os._exit(0 if own else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's pooled connection still works after the child exited.
        assert asyncio.run(parent.fetch("SELECT pg_backend_pid()", []))[0][0] == pid
    finally:
        init_database(previous)
