"""Everything one running instance holds: settings, artifact, snapshot, sync, keys."""

from __future__ import annotations

import hmac
import logging

from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_settings import InstanceSettings
from app.instance.keys import KeyStore
from app.instance.memory import MemoryBudget
from app.instance.replication import ChangeSync
from app.instance.snapshot import SnapshotHolder
from app.instance.sync import SyncController
from app.query import QueryEngine

log = logging.getLogger(__name__)

PLAN_CACHE_SIZE = 256


class InstanceState:
    """The instance's moving parts, wired together; the HTTP app is a thin edge over it."""

    def __init__(self, settings: InstanceSettings, artifact: SchemaArtifact, *,
                 source_password: str, admin_token: str | None, open_source=None):
        self.settings = settings
        self.artifact = artifact
        self.budget = MemoryBudget(settings.memory_limit_mb)
        self.holder = SnapshotHolder()
        self.keys = KeyStore(settings.keys_file)
        # binlog / logical stream changes; poll (and a CDC mode the engine found the
        # source unfit for) reloads on a timer.
        controller = ChangeSync if settings.effective_sync_mode != "poll" else SyncController
        self.sync = controller(artifact, settings, source_password, self.holder,
                               self.budget, open_source=open_source)
        # Plans are cached by query text (LRU): the artifact never changes in one process.
        self.queries = QueryEngine(artifact, limits=settings.limits, cache_size=PLAN_CACHE_SIZE)
        self._admin_token = admin_token or None

    @classmethod
    def from_files(cls, settings: InstanceSettings, *, source_password: str,
                   admin_token: str | None) -> "InstanceState":
        """State for `settings`, with the artifact read from `settings.artifact_path`."""
        with open(settings.artifact_path, encoding="utf-8") as f:
            artifact = SchemaArtifact.from_json(f.read())
        return cls(settings, artifact, source_password=source_password,
                   admin_token=admin_token)

    def start(self) -> None:
        """Begin loading the first snapshot (in the background)."""
        self.keys.refresh()
        self.sync.start()

    def stop(self) -> None:
        self.sync.stop()
        self.holder.close()

    def check_admin_token(self, token: str | None) -> bool:
        """Constant-time check of the control plane's admin token."""
        if not self._admin_token or not token:
            return False
        return hmac.compare_digest(token.encode(), self._admin_token.encode())

    def health(self) -> dict:
        """The /health document."""
        snapshot = self.holder.current
        settings = self.settings
        return {
            "status": self.sync.status(),
            "databaseId": settings.database_id,
            "serving": snapshot is not None,
            "loading": self.sync.loading,
            "snapshotAgeMs": snapshot.age_ms() if snapshot else None,
            "swapCount": self.holder.swap_count,
            "rowCounts": dict(snapshot.row_counts) if snapshot else {},
            "snapshotBytes": snapshot.size_bytes if snapshot else None,
            "lastSyncError": self.sync.last_error,
            "lastSyncErrorCode": self.sync.last_error_code,
            "lastSyncAt": self.sync.last_sync_at,
            "replicationPaused": self.sync.frozen,
            "syncMode": settings.sync_mode,
            "effectiveSyncMode": settings.effective_sync_mode,
            "syncNote": settings.sync_note,
            **self.sync.stream_health(),
            "syncIntervalSeconds": settings.sync_interval_seconds,
            "loadRowsPerSecond": (round(self.sync.last_rows_per_second, 1)
                                  if self.sync.last_rows_per_second is not None else None),
            "memoryLimitMb": settings.memory_limit_mb,
        }


__all__ = ["InstanceState"]
