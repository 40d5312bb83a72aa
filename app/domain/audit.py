"""The audit log: one entry per mutating request of an account, read a page at a time.

The HTTP edge writes the entry (app/api/mutations.py, app/api/audit.py): for a request
its operation handled, in the operation's own transaction, so an effect never commits
without its entry. An entry holds who (the management key's public keyId, the source
IP), what (operationId, the resource's type and id), when, the outcome (HTTP status)
and the request id; never a body, a header or a secret.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from marshmallow import fields

from app.domain import pagination, schemas
from app.domain.errors import InvalidRequest
from app.domain.ids import parse_uuid
from app.domain.principal import Principal
from app.storage.models import AuditEntry


@dataclass(frozen=True)
class Entry:
    """What one mutating request did, as the edge saw it."""

    customer_id: uuid.UUID
    key_id: str
    operation_id: str
    status: int
    request_id: str
    resource_type: str | None = None
    resource_id: uuid.UUID | None = None
    source_ip: str | None = None
    idempotency_key: str | None = None
    replayed: bool = False


class AuditEntryOut(schemas.OutputSchema):
    id = fields.UUID()
    created_at = schemas.UtcDateTime(data_key="createdAt")
    key_id = fields.String(data_key="keyId")
    operation_id = fields.String(data_key="operationId")
    resource_type = fields.String(data_key="resourceType")
    resource_id = fields.UUID(data_key="resourceId")
    status = fields.Integer()
    request_id = fields.String(data_key="requestId")
    source_ip = fields.String(data_key="sourceIp")
    idempotency_key = fields.String(data_key="idempotencyKey")
    replayed = fields.Boolean()


def record(entry: Entry) -> None:
    """Write one entry (one INSERT, in the caller's transaction when there is one)."""
    AuditEntry.insert_row(
        customer=entry.customer_id, key_id=entry.key_id[:32], operation_id=entry.operation_id[:64],
        resource_type=entry.resource_type, resource_id=entry.resource_id, status=entry.status,
        request_id=entry.request_id[:128], source_ip=entry.source_ip[:64] if entry.source_ip else None,
        idempotency_key=entry.idempotency_key, replayed=entry.replayed,
    )


def list_entries(principal: Principal, *, limit: int | None = None, cursor: str | None = None,
                 resource_type: str | None = None, resource_id=None,
                 since: str | dt.datetime | None = None, until: str | dt.datetime | None = None) -> pagination.Page:
    """One page of the caller's audit log, oldest first; of one resource (type, id), from `since` to before `until`."""
    query = AuditEntry.select().where(AuditEntry.customer == principal.customer_id)
    if resource_type is not None:
        query = query.where(AuditEntry.resource_type == resource_type)
    if resource_id is not None:
        query = query.where(AuditEntry.resource_id == parse_uuid(resource_id, "resourceId"))
    start, end = _instant(since, "since"), _instant(until, "until")
    if start is not None:
        query = query.where(AuditEntry.created_at >= start)
    if end is not None:
        query = query.where(AuditEntry.created_at < end)
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("until: must be later than since")
    return pagination.page(query, limit, cursor, lambda rows: AuditEntryOut(many=True).dump(rows))


def _instant(value, name: str) -> dt.datetime | None:
    """An RFC 3339 time with an offset as naive UTC (how the store keeps times); 400 otherwise."""
    if value is None or isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise InvalidRequest(f"{name}: {str(value)[:60]!r} is not an RFC 3339 date-time with an "
                                 f"offset, e.g. 2030-01-01T00:00:00Z")
    if parsed is not None and parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed
