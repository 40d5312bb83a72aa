"""The control plane's database: PostgreSQL (pooled) in production, SQLite embedded."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from peewee import Database, DatabaseProxy, InterfaceError, OperationalError, SqliteDatabase, __exception_wrapper__
from playhouse import db_url
from playhouse.migrations import Runner
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase

log = logging.getLogger(__name__)
peewee_log = logging.getLogger("peewee")

# Models bind to this proxy; the app factory or the CLI initialises it.
db = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# What the store raises when it cannot serve now: unreachable, restarting, connection
# lost, no pooled connection free, locked (see store_unavailable()).
STORE_ERRORS = (OperationalError, InterfaceError, MaxConnectionsExceeded)
# SQLite raises OperationalError for a syntax error too; only these mean "retry later".
_SQLITE_UNAVAILABLE = ("database is locked", "database table is locked", "unable to open database",
                       "disk i/o error", "database or disk is full")
# Seconds to wait for a PostgreSQL connection before the store counts as unavailable
# (unless DATABASE_URL sets connect_timeout itself).
CONNECT_TIMEOUT = 5

SQLITE_PRAGMAS = {
    "journal_mode": "wal",     # readers never block the single writer
    "foreign_keys": 1,
    "busy_timeout": 15000,     # writers queue up instead of failing at once
    "synchronous": "normal",
}


# Every scheme DATABASE_URL may use, as playhouse.db_url names the class to build: the
# control plane always pools its PostgreSQL connections.
URL_SCHEMES = {"postgres": "postgres+pool", "postgresql": "postgresql+pool",
               "postgres+pool": "postgres+pool", "postgresql+pool": "postgresql+pool",
               "sqlite": "sqlite"}
POOL_OPTIONS = {
    "stale_timeout": 300,      # seconds before an idle pooled connection is closed
    "timeout": 30,             # seconds to wait for a free pooled connection
}
SQLITE_OPTIONS = {
    "pragmas": SQLITE_PRAGMAS,
    # BEGIN IMMEDIATE: every transaction takes the write lock up front, so write
    # transactions serialise instead of failing on a lock upgrade. This is what
    # stands in for PostgreSQL's row locks on the embedded store.
    "lock_type": "IMMEDIATE",
    "check_same_thread": False,
}


class PooledStore(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool, checking a connection out without a round trip.

    peewee checks every pooled connection with a `SELECT 1` when it hands it out: one
    round trip more per checkout, per request. Here a checkout looks only at what the
    driver knows locally (the connection's closed flag and transaction status); a
    connection the server dropped while it sat in the pool (a store restart, an idle
    timeout) passes that check, so the first statement sent on a checkout is retried
    once on a new connection if the connection turns out lost. Only the first: once a
    statement went through, a lost connection may have taken a transaction's work with
    it, and that error reaches the caller (a 503 for a request: app/api/errors.py).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Per thread, like peewee's connection state: has this checkout sent a statement yet?
        self._unproven = threading.local()
        # Per thread: statements waiting to go out with the transaction's COMMIT, and how many
        # savepoints are open (peewee keeps them off its transaction stack).
        self._at_commit = threading.local()

    def connect(self, reuse_if_open=False):
        opened = super().connect(reuse_if_open)
        if opened:
            self._unproven.value = True
        return opened

    def _is_closed(self, conn):
        if conn.closed:
            return True
        status = self._adapter.txn_status(conn)
        if status == self._adapter.txn_unknown:
            return True
        if status != self._adapter.txn_idle:
            # Check-in rolls back (peewee's _can_reuse); this is a second guard, never a round trip otherwise.
            return not self._adapter.is_connection_reusable(conn)
        return False

    def _execute_cursor(self, sql, params, **cursor_options):
        return self._first_try(super()._execute_cursor, sql, params, **cursor_options)

    def begin(self, *args, **kwargs):
        # `with db.atomic():` opens with BEGIN, often a checkout's first statement.
        self._at_commit.statements = None   # nothing an abandoned transaction left
        return self._first_try(super().begin, *args, **kwargs)

    # -- a transaction's last statement, sent with its COMMIT ------------------------------------

    def execute_at_commit(self, sql: str, params) -> None:
        """Run `sql` as the transaction's last statement, in the same round trip as its COMMIT.

        For a statement nothing in the transaction reads back, written last (the audit entry of a
        request: app/api/mutations.py). Under a row lock that saves the lock a round trip and the
        thread a wake-up. PostgreSQL runs `INSERT …; COMMIT` sent as one simple query in order and
        stops at an error, which then reaches the caller from the commit, which rolls back, as an
        error of the statement itself would have. A rollback drops the statement. Outside a
        transaction, or inside a savepoint or a nested transaction (whose rollback could not drop
        it), it runs now.
        """
        if len(self._state.transactions) != 1 or getattr(self._at_commit, "savepoints", 0):
            self.execute_sql(sql, params)
            return
        waiting = getattr(self._at_commit, "statements", None)
        if waiting is None:
            waiting = self._at_commit.statements = []
        waiting.append((sql, params))

    def commit(self):
        waiting = getattr(self._at_commit, "statements", None)
        if not waiting:
            return super().commit()
        self._at_commit.statements = None
        cursor = self.cursor()
        with __exception_wrapper__:
            text = b"; ".join(cursor.mogrify(sql, params) for sql, params in waiting) + b"; COMMIT"
        for statement in waiting:
            peewee_log.debug(statement)       # as peewee logs what it sends
        with __exception_wrapper__:
            cursor.execute(text)

    def rollback(self):
        self._at_commit.statements = None
        return super().rollback()

    def savepoint(self):
        return _CountedSavepoint(self._at_commit, super().savepoint())

    def _first_try(self, send, *args, **kwargs):
        if not getattr(self._unproven, "value", False):
            return send(*args, **kwargs)
        try:
            result = send(*args, **kwargs)
        except (OperationalError, InterfaceError):
            if self._state.closed or not self._lost(self._state.conn):
                self._unproven.value = False
                raise
            log.info("a pooled store connection was lost; retrying on a new connection")
            self._replace_lost_connection()
            self._unproven.value = False
            return send(*args, **kwargs)
        self._unproven.value = False
        return result

    def _lost(self, conn) -> bool:
        return bool(conn.closed) or self._adapter.txn_status(conn) == self._adapter.txn_unknown

    def _replace_lost_connection(self) -> None:
        """Swap this thread's lost connection for a new one, keeping peewee's state (an open
        `atomic()` block whose BEGIN is being retried stays open)."""
        with self._lock:
            self._close(self._state.conn, close_conn=True)
            # The idle ones most likely died with it (a store restart): connect afresh.
            self.close_idle()
            with __exception_wrapper__:
                conn = self._connect()
                self._initialize_connection(conn)
            self._state.conn = conn


class _CountedSavepoint:
    """peewee's savepoint, counted per thread while it is open (`PooledStore.execute_at_commit`)."""

    def __init__(self, state: threading.local, savepoint):
        self._state = state
        self._savepoint = savepoint

    def __enter__(self):
        entered = self._savepoint.__enter__()
        self._state.savepoints = getattr(self._state, "savepoints", 0) + 1
        return entered

    def __exit__(self, *exc_info):
        self._state.savepoints -= 1
        return self._savepoint.__exit__(*exc_info)


def make_database(database_url: str | None, data_dir: Path, pool_size: int = 20) -> Database:
    """Build (without connecting) the database `database_url` names; unset means embedded SQLite.

    `sqlite:///relative/path` or `sqlite:////absolute/path`, as SQLAlchemy spells them;
    query-string options (`?connect_timeout=10`) go to the driver and win over the defaults.
    """
    if not database_url:
        data_dir.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(str(data_dir / "reflexdb.sqlite3"), **SQLITE_OPTIONS)
    # Messages never quote the URL: it may hold the store's password.
    scheme, _, rest = database_url.partition("://")
    if scheme.lower() not in URL_SCHEMES:
        raise ValueError(f"DATABASE_URL scheme {scheme!r} is not supported; use postgresql:// or sqlite://")
    url = f"{URL_SCHEMES[scheme.lower()]}://{rest}"
    given = db_url.parse(url)
    if not given.get("database"):
        raise ValueError("DATABASE_URL names no database: postgresql://user@host/<database> "
                         "or sqlite:///<path>")
    if scheme.lower() == "sqlite":
        return db_url.connect(url, **{key: value for key, value in SQLITE_OPTIONS.items() if key not in given})
    defaults = {**POOL_OPTIONS, "max_connections": pool_size, "connect_timeout": CONNECT_TIMEOUT}
    return PooledStore(**{**defaults, **given})


def store_unavailable(error: Exception) -> bool:
    """The store cannot serve now and a retry may succeed (as opposed to a bug in a query)."""
    if isinstance(error, MaxConnectionsExceeded):
        return True
    # The driver's own error; peewee raising one of its own ("Connection already opened") is a bug.
    cause = getattr(error, "orig", None) if isinstance(error, STORE_ERRORS) else None
    if isinstance(cause, sqlite3.Error):
        return (isinstance(cause, sqlite3.OperationalError)
                and str(cause).lower().startswith(_SQLITE_UNAVAILABLE))
    return cause is not None


def init_database(database: Database) -> None:
    """Point the models at `database`."""
    db.initialize(database)


def is_sqlite() -> bool:
    return isinstance(db.obj, SqliteDatabase)


def migrate() -> list[str]:
    """Apply every pending migration; returns the names applied."""
    with db.connection_context():
        applied = Runner(db.obj, directory=str(MIGRATIONS_DIR)).up()
    for name in applied:
        log.info("applied migration %s", name)
    return applied
