"""Housekeeping: expired idempotency records and audit entries past retention go (app/domain/housekeeping.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from app.config import Settings
from app.domain import housekeeping
from app.engine.context import Engine
from app.engine.reconciler import HOUSEKEEPING_SECONDS, Reconciler
from app.storage.database import db
from app.storage.models import AuditEntry, IdempotencyRecord, utcnow
from tests.conftest import make_customer

pytestmark = pytest.mark.both_stores

NOW = dt.datetime(2026, 11, 26, 12, 0, 0)


def add_record(customer, key: str, expires_at: dt.datetime) -> None:
    IdempotencyRecord.create(customer=customer.id, key=key, operation_id="create_connection",
                             response_encrypted="x", created_at=expires_at - dt.timedelta(hours=24),
                             expires_at=expires_at)


def add_entry(customer, request_id: str, created_at: dt.datetime) -> None:
    AuditEntry.create(customer=customer.id, key_id="k", operation_id="create_connection", status=201,
                      request_id=request_id, created_at=created_at)


def keys() -> list[str]:
    return sorted(r.key for r in IdempotencyRecord.select())


def request_ids() -> list[str]:
    return sorted(e.request_id for e in AuditEntry.select())


def test_expired_records_of_every_account_and_old_entries_go(stack):
    (first, _), (second, _) = make_customer("A"), make_customer("B")
    with db.connection_context():
        add_record(first, "expired-a", NOW - dt.timedelta(seconds=1))
        add_record(second, "expired-b", NOW - dt.timedelta(days=3))
        add_record(first, "live-a", NOW + dt.timedelta(hours=1))
        add_entry(first, "old-a", NOW - dt.timedelta(days=31))
        add_entry(second, "old-b", NOW - dt.timedelta(days=400))
        add_entry(second, "recent-b", NOW - dt.timedelta(days=29))

        result = housekeeping.sweep(audit_retention_days=30, now=NOW)

        assert result == housekeeping.SweepResult(idempotency_records=2, audit_entries=2)
        assert keys() == ["live-a"]
        assert request_ids() == ["recent-b"]


def test_a_backlog_drains_a_batch_at_a_time_oldest_first(stack):
    customer, _ = make_customer()
    with db.connection_context():
        for day in range(5):
            add_record(customer, f"r{day}", NOW - dt.timedelta(days=day + 1))
            add_entry(customer, f"e{day}", NOW - dt.timedelta(days=day + 100))

        first = housekeeping.sweep(audit_retention_days=30, now=NOW, batch=2)
        assert first == housekeeping.SweepResult(2, 2)
        assert keys() == ["r0", "r1", "r2"]           # the two oldest went first
        assert request_ids() == ["e0", "e1", "e2"]

        housekeeping.sweep(audit_retention_days=30, now=NOW, batch=2)
        assert housekeeping.sweep(audit_retention_days=30, now=NOW, batch=2) == housekeeping.SweepResult(1, 1)
        assert keys() == [] and request_ids() == []


def test_retention_zero_keeps_the_audit_log(stack):
    customer, _ = make_customer()
    with db.connection_context():
        add_entry(customer, "ancient", NOW - dt.timedelta(days=10_000))
        assert housekeeping.sweep(audit_retention_days=0, now=NOW).audit_entries == 0
        assert request_ids() == ["ancient"]


class NoInstances:
    """A runtime with nothing running: this test is about the sweep, not about instances."""

    def list_instances(self):
        return []


def test_the_reconciler_sweeps_about_once_a_minute(stack):
    customer, _ = make_customer()
    engine = Engine(settings=Settings.from_env(environ={}, audit_retention_days=1), runtime=NoInstances(),
                    wake=lambda _: None)
    reconciler = Reconciler(engine)
    with db.connection_context():
        add_record(customer, "expired", utcnow() - dt.timedelta(seconds=1))
        reconciler.tick()
        assert keys() == []
        add_record(customer, "expired-later", utcnow() - dt.timedelta(seconds=1))
        add_entry(customer, "old", utcnow() - dt.timedelta(days=2))
        reconciler.tick()                      # within the minute: not again
        assert keys() == ["expired-later"] and request_ids() == ["old"]
        reconciler._swept_at -= HOUSEKEEPING_SECONDS
        reconciler.tick()
        assert keys() == [] and request_ids() == []


def test_the_retention_is_a_setting():
    assert Settings.from_env(environ={}).audit_retention_days == 365
    assert Settings.from_env(environ={"REFLEXDB_AUDIT_RETENTION_DAYS": "0"}).audit_retention_days == 0
    with pytest.raises(ValueError, match="REFLEXDB_AUDIT_RETENTION_DAYS must be an integer from 0 to 36500"):
        Settings.from_env(environ={"REFLEXDB_AUDIT_RETENTION_DAYS": "-1"})
