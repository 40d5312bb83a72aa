"""The snapshot as files shared by processes: generations, the `current` pointer, the writer.

One directory per running instance (on tmpfs, `/dev/shm/reflexdb-<databaseId>-<random>/`)
holds:

- `gen-<n>.sqlite` (+ `-wal`, `-shm`): one SQLite database per full load, in
  WAL journal mode, written by the writer process only;
- `current`: a small JSON pointer to the generation readers must use, and its
  data version (bumped by every `SnapshotStore.write()`), replaced atomically
  (temp file + rename, so a new inode every time: readers notice it with one
  `os.stat` per request);
- `state.json`: the writer's sync state for /health (see app/instance/writer.py);
- `control.sock`: the writer's control socket (reload, pause, resume);
- `lock`: held (`flock`) by the instance's processes while any of them lives,
  so a later instance can tell a directory left by a killed one and remove it
  (`sweep_stale_store_directories`).

A generation that is no longer current is deleted after a grace period (the
longest a query may run, plus the readers' idle re-check), so no reader can
still be opening it; readers that have it open keep reading it (an unlinked
file lives until its last descriptor closes) and move to the new one at their
next request or re-check.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace

from app.contracts.files import write_atomic
from app.instance.snapshot import Snapshot

log = logging.getLogger(__name__)

POINTER_FILE = "current"
STATE_FILE = "state.json"
CONTROL_SOCKET = "control.sock"
LOCK_FILE = "lock"
_STORE_PREFIX = "reflexdb-"
# A directory younger than this is never swept: its instance may not hold its lock yet.
STALE_AFTER_SECONDS = 60.0
TMPFS = "/dev/shm"
# The change stream's /health fields, published by the writer in state.json (null when polling).
STREAM_FIELDS = ("replicationLagMs", "eventsApplied", "transactionsApplied", "position",
                 "streamStatus", "streamReloads", "lastReloadReason")
_GENERATION = re.compile(r"^gen-(\d+)\.sqlite$")
# A unix socket path is at most 107 bytes on Linux.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Generation:
    """One published snapshot file and what readers and /health need to know about it."""

    number: int
    file: str                       # name inside the store directory
    data_version: int = 0           # bumped by every applied write (CDC)
    row_counts: dict = field(default_factory=dict)
    size_bytes: int = 0             # when published
    read_started_at: float = 0.0    # wall clock: when the source was read
    loaded_at: float = 0.0
    load_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        total = sum(self.row_counts.values())
        return total / self.load_seconds if self.load_seconds > 0 else 0.0

    def age_ms(self) -> int:
        """Milliseconds since the source was read for this generation."""
        return max(int((time.time() - self.read_started_at) * 1000), 0)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "Generation":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def generation_file(number: int) -> str:
    return f"gen-{number}.sqlite"


def store_base(base: str | None = None, fallback: str | None = None) -> str | None:
    """Where store directories go: `base`, else tmpfs when there is one, else `fallback`."""
    if base is None:
        base = TMPFS if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK) else fallback
    return base


def make_store_directory(database_id: str, *, base: str | None = None,
                         fallback: str | None = None) -> str:
    """A new private directory for one instance's generations (tmpfs when there is one)."""
    base = store_base(base, fallback)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database_id)[:64]
    directory = tempfile.mkdtemp(prefix=f"{_STORE_PREFIX}{safe}-", dir=base)  # mode 0700
    if len(os.path.join(directory, CONTROL_SOCKET)) > _MAX_SOCKET_PATH:
        shutil.rmtree(directory, ignore_errors=True)
        raise OSError(f"the snapshot directory {directory} is too long for a control socket; "
                      f"set snapshotDir to a shorter path")
    return directory


def remove_store_directory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def hold_store_directory(directory: str) -> int:
    """Lock `directory` as in use; the returned descriptor keeps the lock.

    Processes forked afterwards (the writer, the readers) share the lock, which
    ends when the last of them exits, however it exits.
    """
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def sweep_stale_store_directories(base: str | None) -> list[str]:
    """Remove the store directories under `base` whose instance is gone (their lock is free).

    A master and its writer both killed (SIGKILL, OOM killer) leave their
    directory, generations included, on tmpfs: memory nobody frees. Only
    directories with a lock file are considered (an instance holds it for its
    life), and none younger than `STALE_AFTER_SECONDS`. Returns what was removed.
    """
    removed = []
    if base is None or not os.path.isdir(base):
        return removed
    now = time.time()
    for entry in os.scandir(base):
        if not entry.name.startswith(_STORE_PREFIX):
            continue
        with contextlib.suppress(OSError):
            if (not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid()
                    or now - entry.stat().st_mtime < STALE_AFTER_SECONDS):
                continue
            fd = os.open(os.path.join(entry.path, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # an instance lives there
            finally:
                os.close(fd)
            remove_store_directory(entry.path)
            removed.append(entry.path)
    return removed


class WatchedFile:
    """A small JSON file re-read only when it was replaced (one `os.stat` per check)."""

    def __init__(self, path: str):
        self.path = path
        self._stamp = None
        self._value = None
        self._lock = threading.Lock()

    def read(self):
        """The file's JSON value, or None when it does not exist (yet) or is unreadable."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return self._value
        with self._lock:
            try:
                with open(self.path, encoding="utf-8") as f:
                    value = json.load(f)
            except (OSError, ValueError):
                return None
            # The stamp read before the content: a newer file is noticed next time.
            self._stamp, self._value = stamp, value
            return value


def read_pointer(directory: str) -> Generation | None:
    """The published generation of the store in `directory`, or None."""
    value = WatchedFile(os.path.join(directory, POINTER_FILE)).read()
    return Generation.from_dict(value) if isinstance(value, dict) else None


class _Retired:
    __slots__ = ("file", "delete_after")

    def __init__(self, file: str, delete_after: float):
        self.file = file
        self.delete_after = delete_after


class SnapshotStore:
    """The writer's side of the store: full loads as new generations, and writes to the current one.

    Only the writer process holds a `SnapshotStore`; readers use
    `app.instance.reader.GenerationReader` on the same directory.
    """

    def __init__(self, directory: str, *, grace_seconds: float = 30.0):
        self.directory = directory
        self.grace_seconds = grace_seconds
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._current: Generation | None = None
        self._retired: list[_Retired] = []
        self.swap_count = 0

    # -- reading the state --------------------------------------------------

    @property
    def current(self) -> Generation | None:
        """The published generation (None before the first load)."""
        return self._current

    def path_of(self, generation: Generation) -> str:
        return os.path.join(self.directory, generation.file)

    def current_bytes(self) -> int:
        """Bytes the current generation takes now (its file and its WAL)."""
        current = self._current
        return self._file_bytes(current.file) if current else 0

    def retained_bytes(self) -> int:
        """Bytes held by the current generation and by retired ones still in their grace period."""
        with self._lock:
            files = ([self._current.file] if self._current else []) + [
                r.file for r in self._retired]
        return sum(self._file_bytes(name) for name in files)

    def _file_bytes(self, name: str) -> int:
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(self.directory, name + suffix)).st_size
        return size

    # -- full loads ---------------------------------------------------------

    def adopt(self) -> Generation | None:
        """Take over the generation a previous writer published, if its file is still there.

        A restarted writer serves on without reloading: readers never stopped
        reading that file. Files of other generations are left-overs of the
        dead writer (a load it did not finish, or retired ones) and are retired.
        """
        current = read_pointer(self.directory)
        if current is not None and not os.path.exists(self.path_of(current)):
            current = None
        with self._lock:
            if current is not None:
                self._connection = _open_writable(self.path_of(current))
                self._current = current
            for name in os.listdir(self.directory):
                if _GENERATION.match(name) and (current is None or name != current.file):
                    self._retired.append(_Retired(name, time.monotonic() + self.grace_seconds))
        return current

    def load(self, artifact, source, **options) -> Snapshot:
        """Build the next generation's file from `source` (see `Snapshot.load` for `options`).

        The file is not published yet; a failed load leaves no file behind.
        """
        path = os.path.join(self.directory, generation_file(self._next_number()))
        try:
            return Snapshot.load(artifact, source, path=path, **options)
        except BaseException:
            _unlink_database(path)
            raise

    def publish(self, snapshot: Snapshot) -> Generation:
        """Make a loaded snapshot the current generation; readers switch at their next request."""
        name = os.path.basename(snapshot.path)
        number = int(_GENERATION.match(name).group(1))
        generation = Generation(number=number, file=name, data_version=0,
                                row_counts=dict(snapshot.row_counts),
                                size_bytes=snapshot.size_bytes,
                                read_started_at=snapshot.read_started_at,
                                loaded_at=snapshot.loaded_at,
                                load_seconds=snapshot.load_seconds)
        with self._lock:
            old, old_connection = self._current, self._connection
            self._write_pointer(generation)
            self._current, self._connection = generation, snapshot.connection
            if old is not None:
                self.swap_count += 1
                self._retired.append(_Retired(old.file, time.monotonic() + self.grace_seconds))
        if old_connection is not None:
            old_connection.close()
        self.collect()
        return generation

    def discard(self, snapshot: Snapshot) -> None:
        """Drop a loaded snapshot that will not be published."""
        snapshot.close()
        if snapshot.path:
            _unlink_database(snapshot.path)

    def collect(self) -> None:
        """Delete retired generations whose grace period is over."""
        now = time.monotonic()
        with self._lock:
            due = [r for r in self._retired if r.delete_after <= now]
            self._retired = [r for r in self._retired if r.delete_after > now]
        for retired in due:
            _unlink_database(os.path.join(self.directory, retired.file))

    # -- writes to the current generation (CDC) ----------------------------

    @contextlib.contextmanager
    def write(self, *, row_deltas: dict[str, int] | None = None):
        """A writable connection to the current generation, inside `BEGIN IMMEDIATE`.

        Commits when the block ends normally and then bumps the data version
        readers key their answer caches with, and adds `row_deltas` (filled by
        the block: table alias -> net rows added) to the published row counts;
        rolls back on an exception. Readers see all of the transaction or none
        of it. Writes run one at a time and never during a `publish`. Raises
        LookupError before the first generation is published.
        """
        with self._lock:
            connection, current = self._connection, self._current
            if connection is None or current is None:
                raise LookupError("no generation is published yet")
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            # After the commit: a reader that sees the new version also sees the data.
            row_counts = current.row_counts
            if row_deltas:
                row_counts = dict(row_counts)
                for alias, delta in row_deltas.items():
                    row_counts[alias] = row_counts.get(alias, 0) + delta
            bumped = replace(current, data_version=current.data_version + 1,
                             row_counts=row_counts)
            self._write_pointer(bumped)
            self._current = bumped

    # -- shutdown ------------------------------------------------------------

    def close(self) -> None:
        """Close the writer's connection (the files stay for the readers)."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # -- helpers -------------------------------------------------------------

    def _next_number(self) -> int:
        numbers = [int(m.group(1)) for name in os.listdir(self.directory)
                   if (m := _GENERATION.match(name))]
        if self._current is not None:
            numbers.append(self._current.number)
        return max(numbers, default=0) + 1

    def _write_pointer(self, generation: Generation) -> None:
        write_atomic(os.path.join(self.directory, POINTER_FILE), generation.to_json())


def _open_writable(path: str) -> sqlite3.Connection:
    # mode=rw: never create a file that is gone.
    connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False,
                                 isolation_level=None, cached_statements=256)
    connection.execute("PRAGMA synchronous = OFF")
    return connection


def _unlink_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


__all__ = ["CONTROL_SOCKET", "POINTER_FILE", "STATE_FILE", "STREAM_FIELDS", "Generation", "SnapshotStore",
           "WatchedFile", "generation_file", "make_store_directory", "read_pointer",
           "remove_store_directory"]
