"""The job queue (Huey): wake-ups for the engine, never the source of truth.

A task says only "look at database X": what to do is in the database's row
(status, operation, generation, desired state). Losing a task costs one
reconcile interval (the reconciler enqueues every database that needs work);
running one twice is harmless (the second finds the lease taken or nothing to do).

Where the queue lives: Redis when REFLEXDB_REDIS_URL is set (several hosts);
else the store itself: PostgreSQL (Huey's PostgresStorage, psycopg 3, LISTEN/NOTIFY
so a wake-up is picked at once) or, embedded, a SQLite file beside the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from app.config import Settings

if TYPE_CHECKING:
    from huey import Huey

log = logging.getLogger(__name__)

RUN_DATABASE = "run_database"


def make_huey(settings: Settings) -> Huey:
    """A Huey instance on the queue storage `settings` name (connects lazily where it can)."""
    # Imported here: the API process pays for Huey (and redis, psycopg 3) at its first wake-up only.
    from huey import PostgresHuey, RedisHuey, SqliteHuey

    common = dict(name=settings.queue_name, results=False, utc=True)
    if settings.redis_url:
        return RedisHuey(url=settings.redis_url, **common)
    url = settings.database_url
    if url and urlparse(url).scheme.startswith("postgres"):
        # psycopg takes the URL as a conninfo; "+pool" is ours, not libpq's.
        dsn = url.replace("+pool", "", 1).replace("postgres://", "postgresql://", 1)
        return PostgresHuey(dsn=dsn, table_prefix="engine_queue", **common)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(filename=str(settings.data_dir / "engine-queue.sqlite3"), **common)


class EngineQueue:
    """The engine's side of the queue: `wake` (the domain's port) and the task it runs.

    The Huey instance is made on first use, so building the services (CLI,
    tests) connects to nothing; the worker installs the handler that runs tasks.
    """

    def __init__(self, settings: Settings):
        self._settings = settings
        self._huey: Huey | None = None
        self._task = None
        self._handler: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    @property
    def huey(self) -> Huey:
        with self._lock:
            if self._huey is None:
                huey = make_huey(self._settings)
                self._task = huey.task(name=RUN_DATABASE)(self._run)
                self._huey = huey
            return self._huey

    def set_handler(self, handler: Callable[[str], None]) -> None:
        """What a `run_database` task does in this process (the worker's executor)."""
        self._handler = handler

    def wake(self, database_id) -> None:
        """Enqueue a wake-up for the database: the engine carries out what its row says."""
        self.huey  # noqa: B018 - registers the task on first use
        try:
            self._task(str(database_id))
        except Exception:
            # The request that woke us has committed; the reconciler will find
            # the work within one interval, so a queue outage must not fail it.
            log.exception("could not enqueue a wake-up for database %s; the reconciler will pick it up",
                          database_id)

    def queue_depth(self) -> int:
        """Tasks waiting in the queue (one storage round trip; raises when it does not answer)."""
        return self.huey.pending_count()

    def _run(self, database_id: str) -> None:
        if self._handler is None:
            raise RuntimeError("this process enqueues engine tasks but does not run them")
        self._handler(database_id)


__all__ = ["EngineQueue", "RUN_DATABASE", "make_huey"]
