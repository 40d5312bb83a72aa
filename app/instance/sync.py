"""Poll sync: one thread in the writer process that reloads the snapshot every interval.

Every load builds a complete new generation file from the source and
publishes it (`SnapshotStore.publish`) only once it is complete, so readers
never see a partial one. A failed load keeps
the old snapshot serving and marks the instance degraded (or cap_exceeded)
with a reason a user can act on, until the next load succeeds. Frozen
(replication paused) means no timed reloads; an explicit `reload()` still
runs one. Only this thread loads, so there is never more than one load at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import nullcontext
from datetime import datetime, timezone

from app import sources
from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_settings import InstanceSettings
from app.instance.memory import MemoryBudget
from app.instance.snapshot import LoadCancelled, Snapshot, SnapshotError, SnapshotTooLarge, format_size
from app.instance.store import SnapshotStore

log = logging.getLogger(__name__)

# First-load retries back off from this up to the sync interval, so an
# instance started while its source is briefly down does not wait a full interval.
FIRST_RETRY_SECONDS = 2.0


class SnapshotLoader:
    """What every sync controller shares: reading the source, loading a generation, reporting.

    The writer process drives any controller through this interface: `start()`, `stop()`,
    `reload()`, `freeze()`, `unfreeze()`, `status()`, `stream_health()`, and the attributes
    `frozen`, `loading`, `last_error`, `last_error_code`, `last_sync_at`,
    `last_rows_per_second`, `load_count`. It is constructed with the store (and what it needs
    to read the source); docs/instance.md, "Writer interface". `SyncController` (below) polls;
    `ChangeSync` (app/instance/replication.py) streams.
    """

    # How a failure is named in the log.
    failure = "snapshot load"

    def __init__(self, artifact: SchemaArtifact, settings: InstanceSettings, source_password: str,
                 store: SnapshotStore, budget: MemoryBudget, *, open_source=None):
        self.artifact = artifact
        self.settings = settings
        self.store = store
        self.budget = budget
        self._password = source_password
        self._open_source = open_source
        self._cond = threading.Condition()
        self._stopping = False
        self._frozen = settings.replication_paused
        self._thread: threading.Thread | None = None
        self.loading = False
        self.last_error: str | None = None
        self.last_error_code: str | None = None
        self.last_sync_at: str | None = None
        self.last_rows_per_second: float | None = None
        self.load_count = 0

    @property
    def frozen(self) -> bool:
        return self._frozen

    # -- loading -------------------------------------------------------------

    def _load_generation(self, start=lambda source: nullcontext()) -> tuple[Snapshot, object] | None:
        """Load the store's next generation (not yet published) from the source.

        The load runs inside `start(source)`, a context manager on the open source (the
        change capture's stream start); what it gives comes back with the snapshot. None when
        the load failed (recorded: `last_error`) or was cancelled by `stop()`.
        """
        open_source = self._open_source or sources.open_source
        serving = self.store.retained_bytes()
        self.loading = True
        try:
            with open_source(self._credentials()) as source:
                with start(source) as mark:
                    snapshot = self.store.load(
                        self.artifact, source,
                        max_bytes=self.budget.available_for_new_snapshot(serving),
                        limit_mb=self.budget.limit_mb,
                        cancelled=lambda: self._stopping)
        except LoadCancelled:
            return None
        except SnapshotTooLarge as exc:
            message = exc.message
            if serving:
                message = (f"{message}; a reload holds the new snapshot next to the "
                           f"{format_size(serving)} one being served")
            return self._failed("cap_exceeded", message)
        except SnapshotError as exc:
            return self._failed(exc.code, exc.message)
        except sources.SourceError as exc:
            return self._failed(getattr(exc, "code", "source_error"),
                                getattr(exc, "message", None) or str(exc))
        except Exception:
            log.exception("snapshot load failed")
            return self._failed("internal_error",
                                "the snapshot load failed on an internal error; see the "
                                "instance log")
        finally:
            self.loading = False
        if self._stopping:
            self.store.discard(snapshot)
            return None
        return snapshot, mark

    def _publish(self, snapshot: Snapshot) -> None:
        """Serve `snapshot`; its load is recorded first, so whoever sees it sees that too."""
        self.load_count += 1
        self.last_error = self.last_error_code = None
        self.last_sync_at = _now_rfc3339()
        self.last_rows_per_second = snapshot.rows_per_second
        self.store.publish(snapshot)

    def _failed(self, code: str, message: str) -> None:
        message = self._scrub(message)
        self.last_error_code = code
        self.last_error = message
        log.warning("%s failed (%s): %s; %s", self.failure, code, message,
                    "still serving the current snapshot" if self.store.current
                    else "no snapshot is served")

    def _scrub(self, text: str) -> str:
        # Source drivers should never echo the password; this makes sure.
        if self._password and len(self._password) >= 3:
            text = text.replace(self._password, "***")
        return text

    def _credentials(self):
        s = self.settings.source
        return sources.SourceCredentials(backend=s.backend, host=s.host, port=s.port, user=s.user,
                                         password=self._password, schema=s.schema,
                                         database=s.database)

    # -- reporting -----------------------------------------------------------

    def status(self) -> str:
        """loading | ok | degraded | cap_exceeded."""
        if self.last_error_code == "cap_exceeded":
            return "cap_exceeded"
        if self.last_error:
            return "degraded"
        return "ok" if self.store.current is not None else "loading"


class SyncController(SnapshotLoader):
    """Loads generations into a `SnapshotStore` on a timer and on request (poll)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reload_requested = False

    # -- control -----------------------------------------------------------

    def start(self) -> None:
        """Start the sync thread; it loads the first snapshot at once."""
        self._thread = threading.Thread(target=self._run, name="rx-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, abandoning a load in progress."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def reload(self) -> None:
        """Ask for one full reload now (runs after the current load, if any)."""
        with self._cond:
            self._reload_requested = True
            self._cond.notify_all()

    def freeze(self) -> None:
        """Pause replication: keep serving the current snapshot, no timed reloads."""
        with self._cond:
            self._frozen = True
            self._cond.notify_all()

    def unfreeze(self) -> None:
        """Resume replication: the next reload comes right away."""
        with self._cond:
            if self._frozen:
                self._frozen = False
                # What changed while frozen should show up now, not an interval later.
                self._reload_requested = True
            self._cond.notify_all()

    # -- the loop ----------------------------------------------------------

    def _run(self) -> None:
        next_due = 0.0
        adopted = self.store.current
        if adopted is not None:
            # A restarted writer took over a published generation: the next
            # reload is due when that one is an interval old, not now.
            interval = float(self.settings.sync_interval_seconds)
            next_due = time.monotonic() + max(interval - adopted.age_ms() / 1000, 0)
        retry = FIRST_RETRY_SECONDS
        while True:
            with self._cond:
                while not self._stopping:
                    first = self.store.current is None
                    due = time.monotonic() >= next_due and (first or not self._frozen)
                    if self._reload_requested or due:
                        break
                    if self._frozen and not first:
                        self._cond.wait()
                    else:
                        self._cond.wait(max(next_due - time.monotonic(), 0))
                if self._stopping:
                    return
                self._reload_requested = False
            ok = self._load_once()
            interval = float(self.settings.sync_interval_seconds)
            # Quick retries only help a source that is briefly away; a snapshot
            # over the memory limit will not fit any better in a few seconds.
            if ok or self.store.current is not None or self.last_error_code == "cap_exceeded":
                retry = FIRST_RETRY_SECONDS
                next_due = time.monotonic() + interval
            else:
                next_due = time.monotonic() + min(retry, interval)
                retry = min(retry * 2, interval)

    def _load_once(self) -> bool:
        """Load one generation and publish it; record why when it fails."""
        loaded = self._load_generation()
        if loaded is None:
            return False
        self._publish(loaded[0])
        return True

    def stream_health(self) -> dict:
        """The change stream's /health fields (app/instance/replication.py): none when polling."""
        return {"replicationLagMs": None, "eventsApplied": None, "transactionsApplied": None,
                "position": None, "streamStatus": None, "streamReloads": None,
                "lastReloadReason": None}


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["SnapshotLoader", "SyncController"]
