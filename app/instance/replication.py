"""CDC sync: load a snapshot where the source's change stream starts, then apply the stream.

`ChangeSync` has the interface of `SyncController` (app/instance/sync.py; docs/instance.md,
"Writer interface") so that the writer process (app/instance/writer.py) runs it for `binlog`
(MySQL/MariaDB) and `logical` (PostgreSQL) on its `SnapshotStore`. One thread does
everything, so there is never more than one load or apply at a time:

1. open the change capture (app/sources/cdc) and, inside `capture.snapshot_start(source)`,
   load a full snapshot as the store's next generation: its consistent read is the one the
   stream's start position continues; record that position in the generation and publish it;
2. read the stream from that position; apply each `SourceTransaction` in one
   `store.write()` block on the current generation (WAL: readers see all of it or none, and
   never wait for it), recording its position in the same transaction, then confirm it
   (PostgreSQL releases WAL up to it);
3. `ReloadRequired` (position lost, transaction too large), a change that cannot be applied
   from the stream alone, or a `SchemaChange` other than a TRUNCATE: full reload and a new
   stream (the reason is logged, counted and shown in /health as `lastReloadReason`);
4. the source away: the reader reconnects with backoff from the last position; meanwhile
   the instance is degraded with a lastSyncError saying so, and serves what it has;
5. freeze (pause replication): the reader is closed, the position kept; unfreeze reopens it
   there, nothing lost, no reload. `reload()`: a full reload and a new start position.
   `settings.full_reload_seconds` (off by default): a periodic full reload as a safety net;
6. a restarted writer that took over the published generation (`SnapshotStore.adopt`)
   resumes the stream from the position recorded in it: that position was committed with
   the last applied transaction, so nothing is applied twice or missed; if the source no
   longer has it, or the generation records none, it reloads.

docs/instance.md ("Change data capture") documents it for users.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from app import sources
from app.contracts.artifact import SchemaArtifact
from app.contracts.changes import SchemaChange, SourceTransaction
from app.contracts.instance_settings import InstanceSettings, derived_binlog_server_id
from app.instance.changes import IncompleteRow, applier_for
from app.instance.memory import MemoryBudget
from app.instance.store import SnapshotStore
from app.instance.sync import SnapshotLoader
from app.sources.cdc import Backoff, ReloadRequired, change_capture

log = logging.getLogger(__name__)

POLL_TIMEOUT = 0.25          # how long one read of the stream waits (stop/freeze latency)
LOAD_RETRY_FIRST = 2.0       # a failed load is retried after this, doubling ...
LOAD_RETRY_MOST = 60.0       # ... up to this
# The table in each generation that holds the position its data continues at, written in the
# same SQLite transaction as the changes (the artifact never serves a name like this).
POSITION_TABLE = "__reflexdb_stream"


class ChangeSync(SnapshotLoader):
    """Keeps a `SnapshotStore`'s current generation up to date with the source's change stream."""

    failure = "change sync"

    def __init__(self, artifact: SchemaArtifact, settings: InstanceSettings, source_password: str,
                 store: SnapshotStore, budget: MemoryBudget, *, open_source=None):
        super().__init__(artifact, settings, source_password, store, budget, open_source=open_source)
        self._applier = applier_for(artifact)
        self._reload_reason: str | None = None
        self._capture = None
        self._reader = None
        self._load_backoff = Backoff(LOAD_RETRY_FIRST, LOAD_RETRY_MOST)
        self._retry_at = 0.0
        self._loaded_monotonic = 0.0
        # The stream.
        self.position: str | None = None
        self.transactions_applied = 0
        self.events_applied = 0
        self.reloads = 0                      # full reloads the stream forced
        self.last_reload_reason: str | None = None
        self.last_committed_at: float | None = None
        self.replication_lag_ms: int | None = None
        # Called after each applied transaction (the writer publishes its state.json then,
        # so /health counts what /query already shows).
        self.on_change = lambda: None
        self.stream_status = "starting"       # starting | loading | streaming | reconnecting
        #                                       | paused | waiting (to retry a failed load)

    # -- control (any thread) ----------------------------------------------------

    def start(self) -> None:
        """Start the thread: it loads the first snapshot, then streams."""
        self._thread = threading.Thread(target=self._run, name="rx-cdc", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and release what the capture holds on the source (its slot).

        The snapshot dies with the process, so a slot left behind would only pin WAL: the
        next process starts from a new snapshot and a new slot anyway.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        capture = self._capture
        if capture is not None and (self._thread is None or not self._thread.is_alive()):
            try:
                capture.release()
            except Exception as exc:   # the engine's release_all at terminate is the net
                log.warning("could not release the change capture on the source: %s",
                            self._scrub(str(exc)))

    def reload(self) -> None:
        """Ask for one full reload and a new stream start (after the current load, if any)."""
        self._request_reload("reload requested")

    def freeze(self) -> None:
        """Pause replication: stop reading the stream, keep the position, keep serving."""
        with self._cond:
            self._frozen = True
            self._cond.notify_all()

    def unfreeze(self) -> None:
        """Resume replication from the kept position (nothing lost, no reload)."""
        with self._cond:
            self._frozen = False
            self._cond.notify_all()

    @property
    def effective_sync_mode(self) -> str:
        return self.settings.effective_sync_mode

    @property
    def sync_note(self) -> str | None:
        return self.settings.sync_note

    def _request_reload(self, reason: str, *, now: bool = True) -> None:
        with self._cond:
            self._reload_reason = reason
            if now:
                self._retry_at = 0.0
            self._cond.notify_all()

    def restore(self, previous: dict) -> None:
        """Carry the stream's counters over from a dead writer's last state.json."""
        for attribute, name in (("events_applied", "eventsApplied"),
                                ("transactions_applied", "transactionsApplied"),
                                ("reloads", "streamReloads"),
                                ("last_reload_reason", "lastReloadReason"),
                                ("replication_lag_ms", "replicationLagMs")):
            if name in previous and previous[name] is not None:
                setattr(self, attribute, previous[name])

    # -- the loop (the rx-cdc thread) -------------------------------------------

    def _run(self) -> None:
        try:
            if self.store.current is not None:
                self._resume()
            while not self._stopping:
                self._step()
        except Exception:
            log.exception("the change stream loop stopped on an internal error")
            self._failed("internal_error", "the change stream stopped on an internal error; "
                         "see the instance log")
        finally:
            self._close_reader()

    def _step(self) -> None:
        with self._cond:
            if self._stopping:
                return
            reason = self._reload_reason
            if reason is None and self.store.current is None:
                reason = "first load"
            if reason is None and self._safety_net_due():
                reason = (f"periodic full reload (fullReloadSeconds="
                          f"{self.settings.full_reload_seconds})")
            if reason is not None:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    self.stream_status = "waiting"
                    self._cond.wait(wait)
                    return
                self._reload_reason = None
            elif self._frozen:
                if self._reader is not None:
                    self._close_reader()
                    log.info("replication paused at %s", self.position)
                self.stream_status = "paused"
                self._cond.wait(1.0)
                return
        if reason is not None:
            self._reload(reason)
        elif self._reader is None:
            self._open_reader()
        else:
            self._read_one()

    def _safety_net_due(self) -> bool:
        every = self.settings.full_reload_seconds
        return bool(every and self.store.current is not None and not self._frozen
                    and time.monotonic() - self._loaded_monotonic >= every)

    def _reload(self, reason: str) -> None:
        """A full load at a new stream start; swap it in; open the stream there.

        When the load fails, the current snapshot keeps serving (stale: the stream is not
        read) and the reload is retried with backoff.
        """
        self._close_reader()
        if reason != "first load":
            log.info("full reload: %s", reason)
            self.last_reload_reason = reason
        self.stream_status = "loading"
        position = self._load(reason)
        if position is None:
            with self._cond:
                if self._reload_reason is None:
                    self._reload_reason = reason
                self._retry_at = time.monotonic() + self._load_backoff.next_delay()
            return
        self._load_backoff.reset()
        self.position = position
        self._open_reader()

    def _resume(self) -> None:
        """Continue the stream of a generation a previous writer published (writer restart).

        The position recorded in the generation is the one its data continues at (committed
        with the last transaction applied); row counts are recounted and the data version
        bumped, since the dead writer may have committed a transaction without publishing
        them. Without a recorded position the stream cannot continue: full reload.
        """
        current = self.store.current
        self._loaded_monotonic = time.monotonic() - current.age_ms() / 1000
        deltas: dict[str, int] = {}
        try:
            with self.store.write(row_deltas=deltas) as connection:
                position = _recorded_position(connection)
                for table in self.artifact.tables:
                    count = connection.execute(
                        f"SELECT count(*) FROM {_quote(table.name)}").fetchone()[0]
                    deltas[table.alias] = count - current.row_counts.get(table.alias, 0)
        except sqlite3.Error as exc:
            log.warning("the published generation cannot be continued: %s", exc)
            position = None
        if position is None:
            self._request_reload("the writer restarted and the served snapshot records no "
                                 "stream position")
            return
        log.info("the writer restarted: the change stream resumes at %s", position)
        self.position = position
        self.stream_status = "starting"

    def _load(self, reason: str) -> str | None:
        """Load a generation inside the capture's snapshot start and publish it; its position,
        or None."""
        loaded = self._load_generation(lambda source: self._ensure_capture().snapshot_start(source))
        if loaded is None:
            return None
        snapshot, position = loaded
        try:
            _record_position(snapshot.connection, position, create=True)
        except sqlite3.Error as exc:
            self.store.discard(snapshot)
            return self._failed("load_failed", f"the snapshot could not be built: {exc}")
        self._loaded_monotonic = time.monotonic()
        self._publish(snapshot)
        log.info("snapshot loaded (%s); the change stream starts at %s", reason, position)
        return position

    def _ensure_capture(self):
        if self._capture is None:
            self._capture = change_capture(
                self._credentials(), self.artifact, database_id=self.settings.database_id,
                instance_id=self.settings.instance_id, server_id=self._server_id())
        return self._capture

    def _open_reader(self) -> None:
        try:
            self._reader = self._ensure_capture().open_reader(self.position)
        except Exception as exc:   # a position it cannot parse: start over
            log.warning("cannot open the change stream at %s: %s", self.position, exc)
            self._request_reload(f"the stream could not start at {self.position}", now=False)
            return
        self.stream_status = "streaming"

    def _read_one(self) -> None:
        reader = self._reader
        try:
            item = reader.poll(timeout=POLL_TIMEOUT)
        except ReloadRequired as exc:
            self._forced_reload(f"{type(exc).__name__}: {exc.message}")
            return
        except sources.SourceError as exc:
            # A refusal (grants, credentials, a server id in use): retry with backoff.
            self._close_reader()
            message = getattr(exc, "message", None) or str(exc)
            self._failed(getattr(exc, "code", "source_error"),
                         f"the change stream was refused: {message}")
            self.stream_status = "waiting"
            with self._cond:
                self._cond.wait(self._load_backoff.next_delay())
            return
        self._note_reader_status(reader)
        if item is None:
            return
        if self._frozen:
            # Paused while this was read: leave it unapplied. The position is still before
            # it, so resuming reads it again; nothing is lost.
            self._close_reader()
            return
        if isinstance(item, SourceTransaction):
            self._apply(item)
        elif isinstance(item, SchemaChange):
            self._schema_change(item)

    def _note_reader_status(self, reader) -> None:
        if reader.status == "reconnecting":
            self.stream_status = "reconnecting"
            error = self._scrub(reader.last_error or "the source does not answer")
            self.last_error = (f"the change stream is interrupted, reconnecting with backoff "
                               f"from {self.position}: {error}")
            self.last_error_code = "stream_interrupted"
        elif reader.status == "streaming":
            self.stream_status = "streaming"
            if self.last_error_code in ("stream_interrupted", "source_error", "unreachable",
                                        "access_denied"):
                log.info("the change stream is back at %s", self.position)
                self.last_error = self.last_error_code = None
            self._load_backoff.reset()

    def _apply(self, txn: SourceTransaction) -> None:
        # One source transaction, one write transaction on the current generation: readers
        # see all of it or none, and the position recorded with it is where a restarted
        # writer resumes. Readers never wait for it (WAL), however large it is.
        deltas: dict[str, int] = {}
        try:
            with self.store.write(row_deltas=deltas) as connection:
                self._applier.apply(connection, txn.changes, deltas)
                _record_position(connection, txn.position)
        except IncompleteRow as exc:
            self._forced_reload(exc.message)
            return
        except sqlite3.Error as exc:
            self._forced_reload(f"applying a transaction to the snapshot failed: {exc}")
            return
        self._applied(txn.position, len(txn.changes), txn.committed_at)

    def _schema_change(self, change: SchemaChange) -> None:
        replicated = {table.name for table in self.artifact.tables}
        if change.kind == "truncate" and change.table in replicated:
            table = next(t for t in self.artifact.tables if t.name == change.table)
            deltas: dict[str, int] = {}
            with self.store.write(row_deltas=deltas) as connection:
                deleted = connection.execute(f"DELETE FROM {_quote(table.name)}").rowcount
                deltas[table.alias] = -deleted
                _record_position(connection, change.position)
            log.info("TRUNCATE %s applied", table.name)
            self._applied(change.position, 0, None)
            return
        if change.kind == "create" and change.table is not None \
                and change.table not in replicated:
            # A new table the artifact does not serve: a rebuild serves it, if wanted.
            self._applied(change.position, 0, None)
            return
        what = f"table {change.table}" if change.table else "the schema"
        self._forced_reload(f"schema change ({change.kind}) on {what}: "
                            f"{' '.join(change.statement.split())[:200]}")

    def _applied(self, position: str, events: int, committed_at: float | None) -> None:
        self.position = position
        self.transactions_applied += 1
        self.events_applied += events
        if committed_at is not None:
            self.last_committed_at = committed_at
            self.replication_lag_ms = max(0, int((time.time() - committed_at) * 1000))
        try:
            self.on_change()
        except Exception:   # the writer's state loop publishes it anyway
            log.exception("publishing the state after a transaction failed")
        try:
            self._reader.confirm(position)
        except Exception as exc:   # feedback is repeated; a failure here is not fatal
            log.debug("confirming %s failed: %s", position, exc)

    def _forced_reload(self, reason: str) -> None:
        self.reloads += 1
        log.warning("the change stream cannot go on (%s): full reload", reason)
        self._close_reader()
        self._request_reload(reason, now=False)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception as exc:
                log.debug("closing the change reader: %s", exc)

    # -- helpers -----------------------------------------------------------------

    def _server_id(self) -> int | None:
        if self.settings.source.backend != "mysql":
            return None
        return (self.settings.binlog_server_id
                or derived_binlog_server_id(self.settings.database_id))

    # -- reporting ---------------------------------------------------------------

    def stream_health(self) -> dict:
        """The /health fields of the change stream."""
        return {
            "replicationLagMs": self.replication_lag_ms,
            "eventsApplied": self.events_applied,
            "transactionsApplied": self.transactions_applied,
            "position": self.position,
            "streamStatus": self.stream_status,
            "streamReloads": self.reloads,
            "lastReloadReason": self.last_reload_reason,
        }


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _record_position(connection: sqlite3.Connection, position: str, *,
                     create: bool = False) -> None:
    """Record in the generation where its data continues on the stream (in the caller's
    transaction, or, with `create`, in a freshly loaded generation)."""
    if create:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {_quote(POSITION_TABLE)} "
                           f"(id INTEGER PRIMARY KEY CHECK (id = 1), position TEXT NOT NULL)")
    connection.execute(f"INSERT OR REPLACE INTO {_quote(POSITION_TABLE)} (id, position) "
                       f"VALUES (1, ?)", (position,))


def _recorded_position(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute(
            f"SELECT position FROM {_quote(POSITION_TABLE)} WHERE id = 1").fetchone()
    except sqlite3.OperationalError:   # a generation loaded by poll, or an older build
        return None
    return row[0] if row else None


__all__ = ["ChangeSync"]
