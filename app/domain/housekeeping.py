"""Housekeeping: rows the API keeps only for a while are deleted once their time is up.

- Idempotency records past `expires_at` (REFLEXDB_IDEMPOTENCY_TTL_SECONDS after their
  request). An account's own retries already delete its expired records as they go
  (app/domain/idempotency.py); this sweep covers accounts that stop sending requests.
- Audit entries older than REFLEXDB_AUDIT_RETENTION_DAYS (0 keeps them for ever).

The reconciler runs `sweep` about once a minute. Each call deletes at most `batch` rows per
table, oldest first, through an index on the time column (migration 0006), so one pass stays
short however much has piled up; a backlog drains over the next passes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.storage.models import AuditEntry, IdempotencyRecord, utcnow

SWEEP_BATCH = 1000


@dataclass(frozen=True)
class SweepResult:
    idempotency_records: int
    audit_entries: int


def sweep(*, audit_retention_days: int, now: dt.datetime | None = None,
          batch: int = SWEEP_BATCH) -> SweepResult:
    """Delete up to `batch` expired idempotency records and `batch` audit entries past retention."""
    now = now or utcnow()
    expired = (IdempotencyRecord.select(IdempotencyRecord.id)
               .where(IdempotencyRecord.expires_at <= now)
               .order_by(IdempotencyRecord.expires_at).limit(batch))
    records = IdempotencyRecord.delete().where(IdempotencyRecord.id.in_(expired)).execute()
    entries = 0
    if audit_retention_days > 0:
        cutoff = now - dt.timedelta(days=audit_retention_days)
        old = (AuditEntry.select(AuditEntry.id).where(AuditEntry.created_at < cutoff)
               .order_by(AuditEntry.created_at).limit(batch))
        entries = AuditEntry.delete().where(AuditEntry.id.in_(old)).execute()
    return SweepResult(records, entries)


__all__ = ["SWEEP_BATCH", "SweepResult", "sweep"]
