"""What both change readers share: errors, positions, reconnecting with backoff, and units.

A reader turns a source's replication stream into `SourceTransaction`s and `SchemaChange`s
(app/contracts/changes.py). It reads the stream in *units*: one committed source transaction,
or one DDL statement. A unit usually gives one item; a unit that gives several (a PostgreSQL
transaction mixing row changes and a TRUNCATE, a `DROP TABLE a, b`) numbers them, so that every
item's position resumes exactly after it:

- `<boundary>`: after a whole unit (MySQL `file:pos`, PostgreSQL LSN `X/Y`);
- `<boundary>#k`: after the first k items of the first unit that starts after `<boundary>`
  (the unit's items before the last; a restart there replays the unit and skips k items).
"""

from __future__ import annotations

import collections
import logging
import random
import time
from dataclasses import dataclass

from app.contracts.changes import RowChange, SchemaChange, SourceTransaction
from app.sources.base import SourceError

log = logging.getLogger(__name__)

# A transaction with more row changes than this is not buffered: the reader raises
# TransactionTooLarge and the instance reloads (memory stays bounded by this many changes).
DEFAULT_MAX_TRANSACTION_CHANGES = 500_000


class ReloadRequired(Exception):
    """The stream cannot go on from where it is: reload the snapshot and start a new stream."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PositionLost(ReloadRequired):
    """The source no longer has the position (binlog purged, slot dropped or invalidated)."""


class TransactionTooLarge(ReloadRequired):
    """One source transaction has more row changes than the reader may hold in memory."""


@dataclass(frozen=True)
class Position:
    """A parsed position: a unit boundary, plus how many items of the next unit are done."""

    boundary: str
    skip: int = 0

    @classmethod
    def parse(cls, text: str) -> Position:
        boundary, mark, skip = text.partition("#")
        if not boundary or (mark and not skip.isdigit()):
            raise ValueError(f"not a change stream position: {text!r}")
        return cls(boundary, int(skip) if mark else 0)

    def __str__(self) -> str:
        return f"{self.boundary}#{self.skip}" if self.skip else self.boundary


class Backoff:
    """Delays between reconnection attempts: doubling from `first` up to `most`, with jitter."""

    def __init__(self, first: float = 0.2, most: float = 30.0):
        self.first = first
        self.most = most
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.most, self.first * (2 ** self.failures))
        self.failures += 1
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.failures = 0


class Unit:
    """The items of one source transaction or DDL statement, in statement order, being read."""

    def __init__(self, committed_at: float | None = None):
        self.committed_at = committed_at
        self.parts: list[list[RowChange] | tuple] = []   # row-change runs and schema changes
        self.change_count = 0

    def add_change(self, change: RowChange) -> None:
        if not self.parts or not isinstance(self.parts[-1], list):
            self.parts.append([])
        self.parts[-1].append(change)
        self.change_count += 1

    def add_schema_change(self, table: str | None, kind: str, statement: str) -> None:
        self.parts.append((table, kind, statement[:2000]))

    def items(self, start: str, end: str, committed_at: float | None) -> list:
        """The unit's items with their positions: `start#k` inside, `end` for the last."""
        items = []
        last = len(self.parts) - 1
        for index, part in enumerate(self.parts):
            position = end if index == last else f"{start}#{index + 1}"
            if isinstance(part, list):
                items.append(SourceTransaction(changes=tuple(part), position=position,
                                               committed_at=committed_at))
            else:
                table, kind, statement = part
                items.append(SchemaChange(table=table, kind=kind, statement=statement,
                                          position=position))
            self.parts[index] = None   # hand each run over once, not held twice
        return items


class ChangeReader:
    """A source's change stream from a position: `poll()` returns the next item or None.

    Usage (one thread):

        reader = capture.open_reader(position)
        while running:
            item = reader.poll(timeout=1.0)   # SourceTransaction | SchemaChange | None
            if item is not None:
                apply(item); save(item.position); reader.confirm(item.position)

    `poll` returns None when nothing arrived within about `timeout` seconds (a heartbeat;
    MySQL: at most every `heartbeat` seconds) or while the source is unreachable: the reader
    then reconnects by itself with backoff from the last position it handed out (`status`,
    `last_error` and `reconnects` say so). It raises ReloadRequired (PositionLost,
    TransactionTooLarge) when the stream cannot go on, SourceError when the source refuses
    it (credentials, grants), never a driver exception.
    """

    backend = ""

    def __init__(self, position: str, *, max_transaction_changes: int,
                 backoff: Backoff | None = None):
        start = Position.parse(position)
        self._boundary = start.boundary     # resume here: after the last whole unit read
        self._skip = start.skip             # items of the next unit already handed out
        self._ready: collections.deque = collections.deque()
        self._handed_out = str(start)       # the position of the last item handed out
        self.max_transaction_changes = max_transaction_changes
        self.backoff = backoff or Backoff()
        self._retry_at = 0.0
        self._connected = False
        self._closed = False
        # connecting | streaming | reconnecting | failed (ReloadRequired, SourceError) | closed
        self.status = "connecting"
        self.last_error: str | None = None
        self.reconnects = 0
        self.items_read = 0
        self.changes_read = 0

    # -- the interface ---------------------------------------------------------

    @property
    def position(self) -> str:
        """Where a new reader would resume: after everything handed out, before the rest."""
        if self._ready:
            return self._handed_out
        return str(Position(self._boundary, self._skip))

    def poll(self, timeout: float = 1.0):
        """The next SourceTransaction or SchemaChange, or None after about `timeout` seconds."""
        if self._closed:
            raise RuntimeError("the change reader is closed")
        deadline = time.monotonic() + timeout
        while not self._ready:
            now = time.monotonic()
            if not self._connected:
                if now < self._retry_at:
                    time.sleep(max(0.0, min(self._retry_at, deadline) - now))
                    if time.monotonic() >= deadline:
                        return None
                    continue
                if not self._try(self._connect, "connecting"):
                    if time.monotonic() >= deadline:
                        return None
                    continue
                self._connected = True
                self.status = "streaming"
            if not self._try(lambda: self._read(deadline), "reading the stream"):
                continue
            if time.monotonic() >= deadline:
                break
        if not self._ready:
            return None
        item = self._ready.popleft()
        self._handed_out = item.position
        return item

    def confirm(self, position: str) -> None:
        """The caller has applied (and saved) everything up to `position`."""

    def close(self) -> None:
        self._closed = True
        self.status = "closed"
        self._disconnect()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- for the backends ------------------------------------------------------

    def _connect(self) -> None:
        """Open the stream from `self._boundary`."""
        raise NotImplementedError

    def _read(self, deadline: float) -> None:
        """Read until a unit completes (`_finish_unit`), a heartbeat, or `deadline`."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Close the stream; a partly read unit is dropped (it is read again)."""
        raise NotImplementedError

    def _transient(self, exc: Exception) -> bool:
        """Whether `exc` is the network or a restarting server (retry) rather than a refusal."""
        raise NotImplementedError

    def _translate(self, exc: Exception, doing: str) -> Exception:
        """The ReloadRequired or SourceError to raise for a non-transient `exc`."""
        raise NotImplementedError

    def _try(self, step, doing: str) -> bool:
        try:
            step()
            return True
        except (ReloadRequired, SourceError) as exc:
            self._stop(exc)
            raise
        except Exception as exc:
            self._disconnect()
            self._connected = False
            if not self._transient(exc):
                error = self._translate(exc, doing)
                self._stop(error)
                raise error from None
            delay = self.backoff.next_delay()
            self._retry_at = time.monotonic() + delay
            self.status = "reconnecting"
            self.reconnects += 1
            self.last_error = f"{doing}: {self._describe(exc)}"
            log.warning("change stream interrupted while %s (%s); reconnecting in %.1fs from %s",
                        doing, self._describe(exc), delay, self._boundary)
            return False

    def _stop(self, error: Exception) -> None:
        self._disconnect()
        self._connected = False
        self.status = "failed"
        self.last_error = str(error)

    def _describe(self, exc: Exception) -> str:
        return " ".join(str(exc).split())[:300] or type(exc).__name__

    def _check_size(self, unit: Unit) -> None:
        if unit.change_count > self.max_transaction_changes:
            raise TransactionTooLarge(
                f"a source transaction changes more than {self.max_transaction_changes:,} rows "
                f"of the replicated tables; it is not buffered: reload the snapshot")

    def _finish_unit(self, unit: Unit, end: str) -> None:
        """Queue a completed unit's items (those not handed out before a restart)."""
        items = unit.items(self._boundary, end, unit.committed_at) if unit.parts else []
        if items and self._skip:
            items = items[self._skip:]
            self._skip = 0
        self._boundary = end
        self.backoff.reset()
        for item in items:
            self.items_read += 1
            if isinstance(item, SourceTransaction):
                self.changes_read += len(item.changes)
            self._ready.append(item)
