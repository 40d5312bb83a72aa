"""What one reader process holds: settings, artifact, keys, the store's current generation, caches.

The HTTP app (server.py) is a thin edge over it. Sync lives in the writer
process (writer.py); a reader learns its state from `state.json` and reaches
it through `WriterClient`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket

from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_settings import InstanceSettings
from app.instance.keys import KeyStore
from app.instance.reader import AnswerCache, GenerationReader
from app.instance.store import CONTROL_SOCKET, STATE_FILE, STREAM_FIELDS, WatchedFile
from app.query import QueryEngine

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Plans are cached by query text (LRU, per process): the artifact never
# changes in one instance, so a plan is valid for every generation.
PLAN_CACHE_SIZE = 256
CONTROL_TIMEOUT_SECONDS = 5.0


class WriterUnavailable(Exception):
    """The writer process did not answer (it is restarting)."""


class WriterClient:
    """The writer's published state, and its control socket."""

    def __init__(self, directory: str):
        self._state = WatchedFile(os.path.join(directory, STATE_FILE))
        self._socket_path = os.path.join(directory, CONTROL_SOCKET)

    def state(self) -> dict:
        """The writer's last published state ({} before it published any)."""
        value = self._state.read()
        return value if isinstance(value, dict) else {}

    def command(self, name: str) -> dict:
        """Send `reload`, `pause` or `resume`; the writer's state after it."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(CONTROL_TIMEOUT_SECONDS)
                connection.connect(self._socket_path)
                connection.sendall(name.encode("ascii"))
                connection.shutdown(socket.SHUT_WR)
                chunks = []
                while chunk := connection.recv(4096):
                    chunks.append(chunk)
            answer = json.loads(b"".join(chunks))
        except (OSError, ValueError) as exc:
            log.warning("the writer did not take %r: %s", name, exc)
            raise WriterUnavailable() from None
        if "error" in answer:
            raise WriterUnavailable()
        return answer


class InstanceState:
    """A reader process's moving parts, wired together."""

    def __init__(self, settings: InstanceSettings, artifact: SchemaArtifact, *,
                 admin_token: str | None, store_dir: str):
        self.settings = settings
        self.artifact = artifact
        self.keys = KeyStore(settings.keys_file)
        self.reader = GenerationReader(store_dir)
        self.writer = WriterClient(store_dir)
        self.queries = QueryEngine(artifact, limits=settings.limits, cache_size=PLAN_CACHE_SIZE)
        self.answers = AnswerCache(settings.answer_cache_mb * MIB)
        self._admin_token = admin_token or None

    @classmethod
    def from_files(cls, settings: InstanceSettings, *, admin_token: str | None,
                   store_dir: str) -> "InstanceState":
        """State for `settings`, with the artifact read from `settings.artifact_path`."""
        with open(settings.artifact_path, encoding="utf-8") as f:
            artifact = SchemaArtifact.from_json(f.read())
        return cls(settings, artifact, admin_token=admin_token, store_dir=store_dir)

    def start(self) -> None:
        self.keys.refresh()
        self.reader.refresh()
        self.reader.start_follower()

    def stop(self) -> None:
        self.reader.close()

    def check_admin_token(self, token: str | None) -> bool:
        """Constant-time check of the control plane's admin token."""
        if not self._admin_token or not token:
            return False
        return hmac.compare_digest(token.encode(), self._admin_token.encode())

    def status(self) -> str:
        """loading | ok | degraded | cap_exceeded (the writer's)."""
        return self.writer.state().get("status", "loading")

    def last_error(self) -> str | None:
        return self.writer.state().get("lastSyncError")

    def health(self) -> dict:
        """The /health document."""
        state = self.writer.state()
        self.reader.refresh()
        generation = self.reader.generation
        settings = self.settings
        # Serving once the writer says so too: its state then covers that load.
        serving = generation is not None and state.get("generation") is not None
        return {
            "status": state.get("status", "loading"),
            "databaseId": settings.database_id,
            "serving": serving,
            "loading": state.get("loading", generation is None),
            "snapshotAgeMs": generation.age_ms() if generation else None,
            "swapCount": state.get("swapCount", 0),
            "rowCounts": dict(generation.row_counts) if generation else {},
            "snapshotBytes": generation.size_bytes if generation else None,
            "lastSyncError": state.get("lastSyncError"),
            "lastSyncErrorCode": state.get("lastSyncErrorCode"),
            "lastSyncAt": state.get("lastSyncAt"),
            "replicationPaused": state.get("replicationPaused", settings.replication_paused),
            "syncMode": settings.sync_mode,
            "effectiveSyncMode": state.get("effectiveSyncMode", settings.effective_sync_mode),
            "syncNote": state.get("syncNote", settings.sync_note),
            # The change stream's fields (null when polling), as the writer last published them.
            **{name: state.get(name) for name in STREAM_FIELDS},
            "syncIntervalSeconds": settings.sync_interval_seconds,
            "loadRowsPerSecond": state.get("loadRowsPerSecond"),
            "memoryLimitMb": settings.memory_limit_mb,
            "loadCount": state.get("loadCount", 0),
            "generation": generation.number if generation else None,
            "dataVersion": generation.data_version if generation else None,
            "workers": settings.reader_workers,
        }


__all__ = ["InstanceState", "WriterClient", "WriterUnavailable"]
