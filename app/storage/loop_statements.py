"""Single statements sent from the event loop itself, on psycopg2's asynchronous connections.

Every authenticated request looks its key up before anything else runs (app/api/security.py),
and Connexion runs that check on the event loop. Sent through peewee, the lookup needs a
thread: a hand-off there and back, a pooled connection checked out and in, the thread waking
up the loop. About a tenth of a request's CPU (docs/control-plane-performance.md). Here the
statement goes out on a psycopg2 connection in asynchronous mode, and the loop waits for the
answer on the connection's socket, as it waits on a client's.

- Only PostgreSQL: `for_store()` is None for the embedded SQLite store (no asynchronous
  driver), and callers take the thread path.
- At most `SIZE` connections per process, each serving one statement at a time; a statement
  arriving while all are busy raises `Busy` before anything is sent, and the caller takes the
  thread path too, so the store connections stay bounded and nobody waits in a queue of ours.
- The connections are autocommit (psycopg2's asynchronous mode has no transactions), made
  with the store's own connection parameters (DATABASE_URL); an idle one older than the
  pool's `stale_timeout` is closed instead of reused.
- A connection the server dropped while idle (a store restart) fails its statement: the
  statement is sent again once on a new connection, and the other idle ones are dropped (they
  most likely died together), as `PooledStore` does. Callers send only reads and idempotent
  writes here.
- Connecting waits at most the store's `connect_timeout` (libpq's asynchronous connect does not
  apply it: the loop does); a statement at most `STATEMENT_TIMEOUT` seconds. Past either, or
  when cancelled, the connection is closed (it may hold a statement in flight) and a store
  error is raised: 503 `unavailable` for a request.
- libpq resolves a host name while it starts a connection, blocking the loop for that long:
  connections are made rarely (at most `SIZE` per `stale_timeout`), and an IP address in
  DATABASE_URL avoids it.
- Errors are peewee's (OperationalError with the driver's as `orig`), so `store_unavailable()`
  and the error handlers treat them as they treat the thread path's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import psycopg2
import psycopg2.extensions
from peewee import InterfaceError, OperationalError, __exception_wrapper__

from app.storage.database import CONNECT_TIMEOUT, POOL_OPTIONS, PooledStore, db

log = logging.getLogger(__name__)
# Each statement is logged as peewee logs its own (DEBUG, `(sql, params)`), so whatever watches
# peewee's log (a developer's debug output, the tests counting statements) sees these too.
sql_log = logging.getLogger("peewee")

SIZE = 4                      # connections per process
STATEMENT_TIMEOUT = 10.0      # seconds a statement may take before the store counts as unavailable

_POLL_OK = psycopg2.extensions.POLL_OK
_POLL_READ = psycopg2.extensions.POLL_READ
_POLL_WRITE = psycopg2.extensions.POLL_WRITE
_CONNECTION_OK = 0            # libpq's PQstatus() of a working connection


class Busy(Exception):
    """Every connection is serving a statement: nothing was sent; take the thread path."""


class LoopStatements:
    """The asynchronous connections of one PostgreSQL store, in one process."""

    def __init__(self, store: PooledStore, size: int = SIZE):
        self.store = store
        self.size = size
        self.connect_timeout = float(store.connect_params.get("connect_timeout") or CONNECT_TIMEOUT)
        self.stale_timeout = float(getattr(store, "_stale_timeout", None) or POOL_OPTIONS["stale_timeout"])
        self._idle: list[tuple[float, object]] = []     # (when it was made, connection)
        self._taken = 0
        self._lock = threading.Lock()                   # tests drive the app from more than one loop

    # -- the pool ---------------------------------------------------------------------------

    def acquire(self) -> tuple[float, object | None] | None:
        """A slot: (made at, an idle connection or None to make one), or None when all are busy."""
        with self._lock:
            if self._taken >= self.size:
                return None
            self._taken += 1
            now = time.monotonic()
            while self._idle:
                made, conn = self._idle.pop()
                if not conn.closed and now - made < self.stale_timeout:
                    return made, conn
                conn.close()
            return now, None

    def release(self, made: float, conn, *, reusable: bool) -> None:
        with self._lock:
            self._taken -= 1
            if reusable and not conn.closed:
                self._idle.append((made, conn))
                return
        if conn is not None:
            conn.close()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()

    # -- statements -------------------------------------------------------------------------

    async def fetch(self, sql: str, params) -> list[tuple]:
        """The rows `sql` returns (none for a statement without rows); `Busy` if no connection is free."""
        slot = self.acquire()
        if slot is None:
            raise Busy()
        if sql_log.isEnabledFor(logging.DEBUG):
            sql_log.debug((sql, params))
        made, conn = slot
        fresh = conn is None
        try:
            if fresh:
                conn = await self._connect()
            try:
                rows = await self._run(conn, sql, params)
            except (OperationalError, InterfaceError):
                if fresh or not _lost(conn):
                    raise
                # Dropped while idle: once more on a new connection.
                log.info("a pooled store connection was lost; retrying on a new connection")
                conn.close()
                self.close_idle()
                made, conn = time.monotonic(), await self._connect()
                rows = await self._run(conn, sql, params)
        except BaseException:
            self.release(made, conn, reusable=False)
            raise
        self.release(made, conn, reusable=True)
        return rows

    async def _connect(self):
        with __exception_wrapper__:
            conn = psycopg2.connect(database=self.store.database, async_=1, **self.store.connect_params)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await _ready(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, TimeoutError):
                raise self._connect_failed(f"timeout expired after {self.connect_timeout:g} s") from None
            if isinstance(exc, OperationalError) and not str(exc).startswith("connection to server"):
                # libpq's asynchronous connect leaves out which server it tried; its blocking one says.
                raise self._connect_failed(str(exc).strip()) from None
            raise
        return conn

    def _connect_failed(self, reason: str) -> OperationalError:
        params = self.store.connect_params
        host, port = params.get("host") or "localhost", params.get("port") or 5432
        return _unavailable(f'connection to server at "{host}", port {port} failed: {reason}')

    @staticmethod
    async def _run(conn, sql: str, params) -> list[tuple]:
        cursor = conn.cursor()
        try:
            with __exception_wrapper__:
                cursor.execute(sql, params)
            try:
                async with asyncio.timeout(STATEMENT_TIMEOUT):   # no task of its own, unlike wait_for
                    await _ready(conn)
            except TimeoutError:
                conn.close()
                raise _unavailable(f"the store did not answer within {STATEMENT_TIMEOUT:g} s") from None
            except asyncio.CancelledError:
                conn.close()   # the statement is still in flight
                raise
            with __exception_wrapper__:
                return cursor.fetchall() if cursor.description is not None else []
        finally:
            cursor.close()


async def _ready(conn) -> None:
    """Wait until `conn` finished what it is doing (connecting, a statement), polling on its socket."""
    loop = asyncio.get_running_loop()
    while True:
        with __exception_wrapper__:
            state = conn.poll()
        if state == _POLL_OK:
            return
        if state == _POLL_READ:
            watch, unwatch = loop.add_reader, loop.remove_reader
        elif state == _POLL_WRITE:
            watch, unwatch = loop.add_writer, loop.remove_writer
        else:   # pragma: no cover - psycopg2 documents no other state
            raise _unavailable(f"unexpected connection state {state}")
        waiter = loop.create_future()
        fd = conn.fileno()
        watch(fd, _wake, waiter)
        try:
            await waiter
        finally:
            unwatch(fd)


def _lost(conn) -> bool:
    """The connection broke (as opposed to the store refusing a statement on a working one)."""
    return bool(conn.closed) or conn.info.status != _CONNECTION_OK


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _unavailable(message: str) -> OperationalError:
    error = OperationalError(message)
    error.orig = psycopg2.OperationalError(message)   # a driver's error: store_unavailable() says True
    return error


_pools: dict[int, tuple[object, LoopStatements]] = {}
_pools_lock = threading.Lock()


def _forget_the_parents() -> None:
    """In a forked child: make connections of its own. Dropping the parent's copies does not end
    the parent's sessions: psycopg2 does not close a connection made in another process."""
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_the_parents)


def for_store() -> LoopStatements | None:
    """This process's asynchronous connections to the current store, or None when it is not PostgreSQL."""
    store = db.obj
    if not isinstance(store, PooledStore):
        return None
    entry = _pools.get(id(store))
    if entry is None or entry[0] is not store:
        with _pools_lock:
            entry = _pools.get(id(store))
            if entry is None or entry[0] is not store:
                if entry is not None:   # a store that is gone left its id to this one
                    entry[1].close_idle()
                entry = _pools[id(store)] = (store, LoopStatements(store))
    return entry[1]
