"""Query keys `rxk_<keyId>.<mac>`: minted here, checked by the instance on its own.

The mac is an HMAC of the keyId under a per-database secret (see
app.contracts.query_keys). Every change hands the live keys to the instance
runtime (the `instance_keys` port; the local runtime rewrites a keys file that a
running instance re-reads within about a second): that is how a revocation
reaches it without the instance ever calling the control plane.
"""

from __future__ import annotations

import secrets

from app.contracts.query_keys import make_query_key
from app.domain import schemas
from app.domain.environment import current
from app.domain.errors import NotFound
from app.domain.ids import parse_uuid
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Database, QueryKey, utcnow


def create_key(principal: Principal, database_ident, payload: dict) -> dict:
    data = schemas.load(schemas.QueryKeyCreateSchema(), payload)
    with db.atomic():
        database = _lock(principal, database_ident)
        secret = _database_secret(database)
        row = QueryKey.create(customer=principal.customer_id, database=database.id, name=data["name"],
                              key_id=secrets.token_hex(8), expires_at=data["expires_at"])
        publish(database)
    row.key = make_query_key(secret, row.key_id)
    return schemas.QueryKeyCreatedOut().dump(row)


def list_keys(principal: Principal, database_ident) -> list[dict]:
    database = _owned(principal, database_ident)
    return schemas.QueryKeyOut(many=True).dump(QueryKey.live_for(database.id))


def revoke_key(principal: Principal, database_ident, key_ident) -> None:
    """Revoke at once; revoking a revoked key again is a no-op."""
    key_uuid = parse_uuid(key_ident, "api key id")
    with db.atomic():
        database = _lock(principal, database_ident)
        row = QueryKey.select().where((QueryKey.id == key_uuid) & (QueryKey.database == database.id)).first()
        if row is None:
            raise NotFound(f"api key {key_ident} was not found on this database")
        if row.revoked_at is None:
            QueryKey.update(revoked_at=utcnow()).where(QueryKey.id == row.id).execute()
            publish(database)


def publish(database: Database) -> None:
    """Hand the database's secret and every live key (with its expiry) to its instances."""
    if database.query_key_secret_encrypted is None:
        return
    keys = {
        key.key_id: (key.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.expires_at else None)
        for key in QueryKey.live_for(database.id)
    }
    current().instance_keys.deliver_keys(str(database.id), _database_secret(database), keys)


def _database_secret(database: Database) -> str:
    box = current().secret_box
    if database.query_key_secret_encrypted is None:
        secret = secrets.token_urlsafe(32)
        database.query_key_secret_encrypted = box.encrypt(secret)
        Database.update(query_key_secret_encrypted=database.query_key_secret_encrypted).where(
            Database.id == database.id).execute()
        return secret
    return box.decrypt(database.query_key_secret_encrypted)


def _owned(principal: Principal, ident) -> Database:
    database = Database.active_for(principal.customer_id).where(
        Database.id == parse_uuid(ident, "database id")).first()
    if database is None:
        raise NotFound(f"database {ident} was not found")
    return database


def _lock(principal: Principal, ident) -> Database:
    # The row lock orders concurrent key changes, so keys files are written in commit order.
    database = Database.lock_active(principal.customer_id, parse_uuid(ident, "database id"))
    if database is None:
        raise NotFound(f"database {ident} was not found")
    return database
