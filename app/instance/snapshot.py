"""A snapshot of the source as an SQLite database, and the holder that swaps it atomically.

A `Snapshot` is one SQLite database laid out as `app.contracts.artifact`
describes, in memory (tests, tools) or, for a served instance, in a
generation file on tmpfs that reader processes open (app/instance/store.py):
every artifact table is created (a one-column integer primary key as the
rowid), filled from the source in batches (rows already in snapshot storage
types; a source with `read_ahead` is read one batch ahead on a helper thread),
then indexed on primary keys (but a rowid) and on both ends of every relation
and analysed. An in-memory snapshot is then read-only; a file is left in WAL mode
for the writer (CDC), and a full refresh builds a new one.

`SnapshotHolder` leases what it holds to readers and closes a replaced one
when its last reader is done; a reader process holds its generations in one
(app/instance/reader.py).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain

from app.contracts.artifact import SchemaArtifact, Table
from app.instance.memory import release_free_memory
from app.query import SharedConnection, compile_filter, parse_filter

log = logging.getLogger(__name__)

MIB = 1024 * 1024
BATCH_SIZE = 5000
ROWS_PER_INSERT = 50
ANALYSIS_LIMIT = 1000

_SQLITE_TYPES = {
    "integer": "INTEGER", "boolean": "INTEGER",
    "float": "REAL", "decimal": "REAL",
    "text": "TEXT", "date": "TEXT", "datetime": "TEXT", "time": "TEXT", "json": "TEXT",
    "binary": "BLOB",
}


class SnapshotError(Exception):
    """Loading a snapshot failed; `message` is fit to show the user."""

    def __init__(self, message: str, code: str = "load_failed"):
        super().__init__(message)
        self.message = message
        self.code = code


class SnapshotTooLarge(SnapshotError):
    """The snapshot does not fit in the memory it was given."""

    def __init__(self, budget_bytes: int, limit_mb: int | None = None):
        need = f"more than {format_size(budget_bytes)}"
        of = f" (the instance has {limit_mb} MiB in all)" if limit_mb else ""
        super().__init__(f"the snapshot needs {need}{of}; choose a larger instanceSize",
                         code="cap_exceeded")
        self.budget_bytes = budget_bytes


def format_size(size: int) -> str:
    """Whole MiB, or KiB below one MiB."""
    size = max(size, 0)
    return f"{size // MIB} MiB" if size >= MIB else f"{size // 1024} KiB"


class LoadCancelled(SnapshotError):
    """The load was abandoned because the instance is shutting down."""

    def __init__(self):
        super().__init__("the snapshot load was cancelled", code="cancelled")


@dataclass
class Snapshot:
    """One immutable, fully loaded in-memory copy of the source schema."""

    connection: sqlite3.Connection
    row_counts: dict[str, int]
    loaded_at: float                 # time.time() when the load finished
    load_seconds: float
    size_bytes: int
    # When reading the source began: the data is as old as that, not as old
    # as the end of the load.
    read_started: float = field(default_factory=time.monotonic, repr=False)
    path: str | None = None          # the database file; None = in memory
    read_started_at: float = field(default_factory=time.time, repr=False)  # wall clock

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.load_seconds if self.load_seconds > 0 else 0.0

    def age_ms(self) -> int:
        """Milliseconds since the source was read for this snapshot."""
        return int((time.monotonic() - self.read_started) * 1000)

    def close(self) -> None:
        self.connection.close()
        if self.path is None:
            release_free_memory()

    # -- loading -----------------------------------------------------------

    @classmethod
    def load(cls, artifact: SchemaArtifact, source, *, max_bytes: int | None = None,
             limit_mb: int | None = None, batch_size: int = BATCH_SIZE,
             cancelled=lambda: False, path: str | None = None) -> "Snapshot":
        """Build a snapshot of every artifact table from an open `Source`.

        In memory, read-only once loaded; or, with `path`, in that (new) file,
        left writable in WAL journal mode for the store's writer. Raises
        SnapshotTooLarge when the database grows past `max_bytes`,
        LoadCancelled when `cancelled()` turns true, SnapshotError otherwise
        for problems of the snapshot itself; source errors propagate as is.
        """
        started = time.monotonic()
        started_at = time.time()
        if path is None:
            connection = sqlite3.connect(":memory:", check_same_thread=False,
                                         isolation_level=None, cached_statements=256,
                                         factory=SharedConnection)
        else:
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                         cached_statements=256)
        try:
            connection.execute("PRAGMA journal_mode = OFF")
            connection.execute("PRAGMA synchronous = OFF")
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            guard = _SizeGuard(connection, page_size, max_bytes, limit_mb)
            row_counts = {}
            # One point-in-time view of the source for every table of this load.
            with source.consistent_read():
                for table in artifact.tables:
                    connection.execute(_create_table_sql(table))
                    row_counts[table.alias] = _load_table(connection, source, artifact, table,
                                                          batch_size, guard, cancelled)
            for sql in index_statements(artifact):
                if cancelled():
                    raise LoadCancelled()
                _create_index(connection, sql)
                guard.check()
            # Statistics from the first ANALYSIS_LIMIT entries of each index (what SQLite
            # recommends for its own PRAGMA optimize): the benchmark's row counts came out
            # within 10 % and its rows per key the same, in 0.1 ms instead of 12.
            connection.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
            connection.execute("ANALYZE")
            guard.check()
            if path is None:
                # From here on the snapshot is immutable: stray writes fail.
                connection.execute("PRAGMA query_only = ON")
                # Queries are interrupted at their time budget (not the load).
                connection.enforce_time_budget()
            else:
                # Readers in other processes read one consistent state while
                # the writer applies changes (CDC); tmpfs needs no fsync.
                connection.execute("PRAGMA journal_mode = WAL")
            size = guard.size()
        except MemoryError:
            _discard(connection)
            raise SnapshotTooLarge(max_bytes or 0, limit_mb) from None
        except sqlite3.Error as exc:
            _discard(connection)
            if _is_out_of_memory(exc):
                raise SnapshotTooLarge(max_bytes or 0, limit_mb) from None
            raise SnapshotError(f"the snapshot could not be built: {exc}") from None
        except BaseException:
            _discard(connection)
            raise
        seconds = time.monotonic() - started
        snapshot = cls(connection, row_counts, time.time(), seconds, size, started, path,
                       started_at)
        log.info("snapshot loaded: %d rows in %.2fs (%.0f rows/s), %.1f MiB",
                 snapshot.total_rows, seconds, snapshot.rows_per_second, size / MIB)
        return snapshot


class _SizeGuard:
    """Stops a load as soon as the database outgrows its budget."""

    def __init__(self, connection, page_size, max_bytes, limit_mb):
        self.connection = connection
        self.page_size = page_size
        self.max_bytes = max_bytes
        self.limit_mb = limit_mb

    def size(self) -> int:
        return self.connection.execute("PRAGMA page_count").fetchone()[0] * self.page_size

    def check(self) -> None:
        if self.max_bytes is not None and self.size() > self.max_bytes:
            raise SnapshotTooLarge(self.max_bytes, self.limit_mb)


def _discard(connection) -> None:
    connection.close()
    release_free_memory()


def _load_table(connection, source, artifact, table: Table, batch_size, guard, cancelled) -> int:
    store = _Inserter(connection, table)
    where = source_filter(table, artifact.backend)
    count = 0
    connection.execute("BEGIN")
    try:
        read = _read_ahead if getattr(source, "read_ahead", False) else _read_inline
        with read(lambda: source.stream_rows(table, where=where,
                                             batch_size=batch_size)) as batches:
            for batch in batches:
                if cancelled():
                    raise LoadCancelled()
                store.insert(batch)
                count += len(batch)
                guard.check()
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return count


class _Inserter:
    """Inserts rows into one table, ROWS_PER_INSERT rows per INSERT statement.

    One statement per row costs SQLite a step and a reset per row (and the sqlite3 module a
    GIL round trip); 50 rows per statement stored the benchmark's rows in about 0.7 of the
    time. The rows keep their order, so implicit rowids are the same.
    """

    def __init__(self, connection, table: Table):
        self.connection = connection
        width = len(table.columns)
        variables = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self.rows_per_statement = max(1, min(ROWS_PER_INSERT, variables // max(width, 1)))
        one = f"({', '.join('?' * width)})"
        into = f"INSERT INTO {quote(table.name)} VALUES "
        self.insert_one = into + one
        self.insert_many = into + ", ".join([one] * self.rows_per_statement)

    def insert(self, rows) -> None:
        step = self.rows_per_statement
        whole = len(rows) - len(rows) % step
        if step > 1 and whole:
            self.connection.executemany(self.insert_many, (
                list(chain.from_iterable(rows[at:at + step])) for at in range(0, whole, step)))
        else:
            whole = 0
        if whole < len(rows):
            self.connection.executemany(self.insert_one, rows[whole:])


_DONE = object()


@contextmanager
def _read_inline(open_batches):
    """The batches of `open_batches()`, read when the caller asks for the next one."""
    batches = open_batches()
    try:
        yield batches
    finally:
        batches.close()


@contextmanager
def _read_ahead(open_batches):
    """The batches of `open_batches()`, read on a helper thread one batch ahead.

    While SQLite inserts one batch, the next is read: the source's server produces it and
    the driver receives it (both release the GIL) at the same time, instead of after. At
    most two batches are held besides the one being stored (the memory the runtime reserve
    counts, docs/instance.md). Leaving the block early (an error, a cancelled load, the
    memory cap) stops the reader and waits for it: the source's connection is free again
    when the block ends. An error of the source is raised here, in the caller's thread.
    """
    handoff = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item) -> bool:
        """Hand `item` over once the caller has taken the previous one; False when it left."""
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        batches = None
        try:
            batches = open_batches()
            for batch in batches:
                if not offer((batch, None)):
                    return
            offer((_DONE, None))
        except BaseException as exc:  # handed to the caller's thread, raised there
            offer((_DONE, exc))
        finally:
            if batches is not None:
                batches.close()   # the source's cursor is closed on this thread

    def received():
        while True:
            batch, error = handoff.get()
            if batch is _DONE:
                if error is not None:
                    raise error
                return
            yield batch

    reader = threading.Thread(target=read, name="rx-load-read", daemon=True)
    reader.start()
    try:
        yield received()
    finally:
        # A reader still handing over batches sees `stop` within one put timeout.
        stop.set()
        reader.join()


def source_filter(table: Table, backend: str):
    """`(sql, params)` applying `table.where` on the source, or None."""
    if not table.where:
        return None
    return compile_filter(parse_filter(table.where), table, backend)


def quote(name: str) -> str:
    """An SQLite identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _create_table_sql(table: Table) -> str:
    key = rowid_key(table)
    columns = ", ".join(
        f"{quote(c.name)} INTEGER PRIMARY KEY" if c.name == key
        else f"{quote(c.name)} {_SQLITE_TYPES.get(c.type, '')}".rstrip()
        for c in table.columns)
    return f"CREATE TABLE {quote(table.name)} ({columns})"


def rowid_key(table: Table) -> str | None:
    """The column that becomes the rowid: a primary key of one integer column.

    Rows are then stored in key order, so `ORDER BY key` with `OFFSET` walks
    the table instead of an index plus one table lookup per row (measured on
    20,000 posts: 1.6 instead of 5.0 ms for a page at a random offset). Source
    primary keys are never NULL nor duplicated; an integer beyond 64 bits
    cannot be stored by SQLite in any column.
    """
    if len(table.primary_key) != 1:
        return None
    name = table.primary_key[0]
    column = next((c for c in table.columns if c.name == name), None)
    return name if column is not None and column.type == "integer" else None


def index_statements(artifact: SchemaArtifact) -> list[str]:
    """CREATE INDEX statements: primary keys (unique) and both ends of every relation.

    None on a table's rowid key (`rowid_key`): the table itself is that index, and building
    a copy of it took about a third of the index time of the benchmark's tables.
    """
    names = {t.alias: t.name for t in artifact.tables}
    rowid = {(t.name, (key,)) for t in artifact.tables if (key := rowid_key(t)) is not None}
    wanted: dict[tuple[str, tuple[str, ...]], bool] = {}
    for table in artifact.tables:
        if table.primary_key:
            wanted[(table.name, table.primary_key)] = True
    for relation in artifact.relations:
        for alias, columns in ((relation.table, relation.columns),
                               (relation.target, relation.target_columns)):
            if alias in names and columns:
                wanted.setdefault((names[alias], tuple(columns)), False)
    for key in rowid:
        wanted.pop(key, None)
    statements = []
    for number, ((table_name, columns), unique) in enumerate(wanted.items()):
        kind = "UNIQUE INDEX" if unique else "INDEX"
        statements.append(f"CREATE {kind} {quote(f'rx_ix_{number}')} ON {quote(table_name)} "
                          f"({', '.join(quote(c) for c in columns)})")
    return statements


def _create_index(connection, sql: str) -> None:
    try:
        connection.execute(sql)
    except sqlite3.IntegrityError:
        # A primary key that is not unique in SQLite's binary comparison (it
        # never should be) still deserves an index, just not a unique one.
        connection.execute(sql.replace("CREATE UNIQUE INDEX", "CREATE INDEX", 1))


def _is_out_of_memory(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", None) == 7  # SQLITE_NOMEM
            or "out of memory" in str(exc).lower())


class NoSnapshot(Exception):
    """No snapshot has been loaded yet."""


class _Lease:
    """Reader accounting for one snapshot: closed once retired and unread."""

    __slots__ = ("snapshot", "readers", "retired")

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.readers = 0
        self.retired = False


class SnapshotHolder:
    """Holds the snapshot being served; `swap` replaces it atomically."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lease: _Lease | None = None
        self._retired: list[_Lease] = []
        self.swap_count = 0

    @property
    def current(self) -> Snapshot | None:
        lease = self._lease
        return lease.snapshot if lease else None

    def age_ms(self) -> int | None:
        snapshot = self.current
        return snapshot.age_ms() if snapshot else None

    def retained_bytes(self) -> int:
        """Bytes held by the current snapshot and by retired ones still being read."""
        with self._lock:
            leases = ([self._lease] if self._lease else []) + self._retired
            return sum(lease.snapshot.size_bytes for lease in leases)

    @contextmanager
    def reading(self):
        """Yield the current snapshot; it stays open until the block ends, even across a swap."""
        with self._lock:
            lease = self._lease
            if lease is None:
                raise NoSnapshot()
            lease.readers += 1
        try:
            yield lease.snapshot
        finally:
            with self._lock:
                lease.readers -= 1
                close = lease.retired and lease.readers == 0
                if close:
                    self._retired.remove(lease)
            if close:
                lease.snapshot.close()

    def swap(self, snapshot: Snapshot) -> None:
        """Serve `snapshot` from now on; the old one closes when its last reader is done."""
        with self._lock:
            old, self._lease = self._lease, _Lease(snapshot)
            if old is not None:
                self.swap_count += 1
            close = self._retire(old)
        if close:
            old.snapshot.close()

    def close(self) -> None:
        """Drop the current snapshot (shutdown)."""
        with self._lock:
            old, self._lease = self._lease, None
            close = self._retire(old)
        if close:
            old.snapshot.close()

    def _retire(self, lease: "_Lease | None") -> bool:
        """Mark `lease` retired (lock held); True when nobody reads it and it can close now."""
        if lease is None:
            return False
        lease.retired = True
        if lease.readers:
            self._retired.append(lease)
            return False
        return True


__all__ = ["LoadCancelled", "NoSnapshot", "Snapshot", "SnapshotError", "SnapshotHolder",
           "SnapshotTooLarge", "index_statements", "quote", "source_filter"]
