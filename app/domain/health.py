"""Liveness and readiness of the control plane, and the fleet figures its metrics report."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from peewee import fn

from app.domain import environment
from app.domain.errors import Unavailable
from app.storage.database import db, is_sqlite
from app.storage.models import Database, Instance

log = logging.getLogger(__name__)

# healthStatus values a live instance reports; null (no check yet) is counted as "unknown".
INSTANCE_HEALTH = ("ok", "degraded", "unreachable", "cap_exceeded", "unknown")


def check() -> dict:
    """The store answers a query; when it does not, its error reaches the HTTP edge (503)."""
    db.execute_sql("SELECT 1")
    return {"status": "ok", "storage": _storage()}


def alive() -> dict:
    """The process serves requests; touches nothing else (a liveness probe must not fail
    because the store is down: restarting the API would not bring it back)."""
    return {"status": "ok"}


def ready() -> dict:
    """The store and the job queue answer; raises Unavailable naming the part that does not.

    A store error propagates as it is (the HTTP edge answers 503 for it); the queue can fail
    in as many ways as it has storages (Redis, PostgreSQL, SQLite), so any error from it is
    taken for "does not answer".
    """
    db.execute_sql("SELECT 1")
    try:
        depth = environment.current().engine.queue_depth()
    except Exception as exc:   # any failure of the queue's storage means "not ready"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        log.warning("readiness: the job queue does not answer: %s", reason)
        raise Unavailable("the job queue does not answer; retry in a few seconds") from None
    return {"status": "ok", "storage": _storage(), "jobQueue": {"depth": depth}}


@dataclass(frozen=True)
class Fleet:
    """What /metrics reports from the store and the queue at scrape time."""

    databases_by_status: dict[str, int]
    instances_by_health: dict[str, int]
    queue_depth: int | None   # None: the queue did not answer


def fleet(statuses: tuple[str, ...]) -> Fleet:
    """Live databases per status (every status in `statuses`, zero included), live instances
    per health status, and the job queue's depth: two GROUP BY queries and one queue call."""
    by_status = dict.fromkeys(statuses, 0)
    rows = (Database.select(Database.status, fn.COUNT(Database.id).alias("n"))
            .where(Database.deleted_at.is_null()).group_by(Database.status).tuples())
    for status, count in rows:
        by_status[status] = count
    by_health = dict.fromkeys(INSTANCE_HEALTH, 0)
    rows = (Instance.select(Instance.health_status, fn.COUNT(Instance.id).alias("n"))
            .where(Instance.stopped_at.is_null()).group_by(Instance.health_status).tuples())
    for health, count in rows:
        key = health if health in by_health else "unknown"
        by_health[key] += count
    try:
        depth = environment.current().engine.queue_depth()
    except Exception as exc:   # a missing figure, not a failed scrape
        log.warning("metrics: the job queue does not answer: %s",
                    " ".join(str(exc).split())[:200] or type(exc).__name__)
        depth = None
    return Fleet(by_status, by_health, depth)


def _storage() -> str:
    return "sqlite" if is_sqlite() else "postgresql"
