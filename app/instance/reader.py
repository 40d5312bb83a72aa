"""A reader process's view of the store: the current generation, opened read-only and mapped.

Every request checks the `current` pointer with one `os.stat` (the writer
replaces the file, so a new inode means a new generation or data version) and
runs its whole query on one connection inside one read transaction: a nested
query never mixes two states, even while the writer commits a change (WAL).
Connections are pooled per generation; a retired generation's connections
close when their last query ends (`SnapshotHolder` leases). A follower thread
re-checks the pointer every second, so an idle reader lets go of an old
generation too.

Connections map the file (`PRAGMA mmap_size`): tmpfs pages are shared by all
readers and the writer, so the snapshot is in memory once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections import OrderedDict

from app.instance.snapshot import NoSnapshot, SnapshotHolder
from app.instance.store import POINTER_FILE, Generation, WatchedFile
from app.query import SharedConnection

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Past any snapshot the memory limits allow; SQLite maps no more than the file.
MMAP_BYTES = 1 << 40
RECHECK_SECONDS = 1.0


class ReaderGeneration:
    """One generation as this process reads it: a pool of read-only connections."""

    def __init__(self, path: str, generation: Generation):
        self.path = path
        self.generation = generation
        self.size_bytes = generation.size_bytes
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def age_ms(self) -> int:
        return self.generation.age_ms()

    def acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _open_reader(self.path)

    def release(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _open_reader(path: str) -> sqlite3.Connection:
    # mode=rw, not ro: a WAL reader may need to create the -shm index after a
    # writer restart; query_only refuses every write anyway. rw never creates
    # a file that is gone.
    connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False,
                                 isolation_level=None, cached_statements=256,
                                 factory=SharedConnection)
    try:
        connection.execute("PRAGMA query_only = ON")
        connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        connection.enforce_time_budget()
    except BaseException:
        connection.close()
        raise
    return connection


class GenerationReader:
    """The current generation of the store in `directory`, for the request threads of one process."""

    def __init__(self, directory: str, *, recheck_seconds: float = RECHECK_SECONDS):
        self.directory = directory
        self.recheck_seconds = recheck_seconds
        self.holder = SnapshotHolder()
        self._pointer = WatchedFile(os.path.join(directory, POINTER_FILE))
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._seen = None   # the pointer's value last followed (WatchedFile returns the same object)
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    @property
    def generation(self) -> Generation | None:
        current = self.holder.current
        return current.generation if current else None

    def refresh(self) -> tuple[int, int] | None:
        """Follow the pointer; the current (generation, data version), or None before the first."""
        value = self._pointer.read()
        if value is None or value is self._seen:
            return self._version
        generation = Generation.from_dict(value)
        version = (generation.number, generation.data_version)
        if version == self._version:
            return version
        with self._lock:
            current = self.holder.current
            if current is None or current.generation.number != generation.number:
                self.holder.swap(ReaderGeneration(os.path.join(self.directory, generation.file),
                                                  generation))
            else:
                current.generation = generation
            self._version = version
            self._seen = value
        return version

    @contextlib.contextmanager
    def reading(self, *, refresh: bool = True):
        """Yield `(connection, version)`: one read transaction on the current generation.

        `refresh=False` when the caller has just called `refresh()`.
        """
        if refresh:
            self.refresh()
        with self.holder.reading() as current:
            version = (current.generation.number, current.generation.data_version)
            connection = current.acquire()
            try:
                connection.execute("BEGIN")
                yield connection, version
            finally:
                try:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                except sqlite3.Error:
                    connection.close()
                else:
                    current.release(connection)

    def start_follower(self) -> None:
        """Re-check the pointer every `recheck_seconds` in the background."""
        self._follower = threading.Thread(target=self._follow, name="rx-follow", daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        while not self._stop.wait(self.recheck_seconds):
            try:
                self.refresh()
            except Exception:   # never end the thread: requests refresh too
                log.exception("following the snapshot pointer failed")

    def close(self) -> None:
        self._stop.set()
        self.holder.close()


class AnswerCache:
    """Encoded answers by query text for one (generation, data version), bounded in bytes.

    A newer version empties it (the data changed); an answer larger than an
    eighth of the cache is not kept, so one big answer cannot evict all others.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 8
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._version = None
        self._lock = threading.Lock()

    def get(self, text: str, version) -> bytes | None:
        if not self.max_bytes:
            return None
        with self._lock:
            if version != self._version:
                # Versions only grow: an older one is a thread that looked
                # before a swap, and must not empty the cache of the newer.
                if self._version is None or version > self._version:
                    self._reset(version)
                return None
            body = self._entries.get(text)
            if body is not None:
                self._entries.move_to_end(text)
            return body

    def put(self, text: str, version, body: bytes) -> None:
        size = len(body) + len(text)
        if not self.max_bytes or size > self.max_entry_bytes:
            return
        with self._lock:
            if version != self._version:
                return   # computed on an older version (or a newer one not seen yet)
            old = self._entries.pop(text, None)
            if old is not None:
                self._bytes -= len(old) + len(text)
            self._entries[text] = body
            self._bytes += size
            while self._bytes > self.max_bytes:
                key, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted) + len(key)

    def _reset(self, version) -> None:
        self._entries.clear()
        self._bytes = 0
        self._version = version

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["AnswerCache", "GenerationReader", "NoSnapshot", "ReaderGeneration"]
