"""Management keys `rmk_<keyId>.<secret>`: minting, authentication and revocation."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets

from app.domain import pagination, schemas
from app.domain.ids import owned
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.loop_statements import Busy
from app.storage.models import ManagementKey, utcnow

PREFIX = "rmk_"
# lastUsedAt is written at most this often per key: one write per request
# would turn every authenticated read into a write.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint(customer_id, name: str, expires_at: dt.datetime | None = None) -> tuple[ManagementKey, str]:
    """Store a new key for `customer_id`; returns the row and the full key (shown once)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ManagementKey.create(customer=customer_id, name=name, key_id=key_id,
                               secret_hash=_hash(secret), expires_at=expires_at)
    return row, f"{PREFIX}{key_id}.{secret}"


def authenticate(token: str) -> Principal | None:
    """The principal a bearer token stands for, or None if it is not a live key."""
    parsed = _parse(token)
    if parsed is None:
        return None
    row = ManagementKey.with_owner(parsed[0])
    now = utcnow()
    principal, stale = _check(row, parsed, now)
    if stale:
        ManagementKey.touch(row.id, now)
    return principal


async def authenticate_from_loop(token: str, statements) -> Principal | None:
    """`authenticate()` with its statements sent from the event loop on `statements`
    (app/storage/loop_statements.py): `Busy` before anything is sent when no connection is free.
    A lastUsedAt write that finds them all busy is left to a later request (it is written at
    most once a minute anyway)."""
    parsed = _parse(token)
    if parsed is None:
        return None
    row = await ManagementKey.with_owner_from_loop(statements, parsed[0])
    now = utcnow()
    principal, stale = _check(row, parsed, now)
    if stale:
        with contextlib.suppress(Busy):
            await ManagementKey.touch_from_loop(statements, row.id, now)
    return principal


def _parse(token: str) -> tuple[str, str] | None:
    """(keyId, secret) of a well-formed token, else None."""
    if not token.startswith(PREFIX) or "." not in token:
        return None
    key_id, _, secret = token[len(PREFIX):].partition(".")
    if not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


def _check(row, parsed: tuple[str, str], now: dt.datetime) -> tuple[Principal | None, bool]:
    """(the principal if `row` is the live key `parsed` names, whether its lastUsedAt is due)."""
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(parsed[1])):
        return None, False
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None, False
    principal = Principal(customer_id=row.customer_id, key_id=parsed[0], is_admin=row.is_admin, plan=row.plan)
    return principal, row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION


def create_key(principal: Principal, payload: dict) -> dict:
    data = schemas.load(schemas.shared(schemas.ManagementKeySchema), payload)
    with db.transaction():
        row, key = mint(principal.customer_id, data["name"], data["expires_at"])
    row.key = key
    return schemas.shared(schemas.ManagementKeySchema).dump(row)


def list_keys(principal: Principal, *, limit: int | None = None, cursor: str | None = None) -> pagination.Page:
    """One page of the account's keys, revoked ones included, oldest first."""
    return pagination.page(ManagementKey.owned_by(principal.customer_id), limit, cursor,
                           schemas.shared(schemas.ManagementKeySchema, exclude=("key",), many=True).dump)


def revoke_key(principal: Principal, ident) -> None:
    """Revoke at once; revoking a revoked key is a no-op, so retries are safe."""
    row = owned(ManagementKey, principal, ident, "management key")
    (ManagementKey.update(revoked_at=utcnow())
     .where((ManagementKey.id == row.id) & ManagementKey.revoked_at.is_null()).execute())
