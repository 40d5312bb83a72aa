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
from app.domain import pagination, schemas
from app.domain.environment import current
from app.domain.errors import NotFound
from app.domain.ids import owned, parse_uuid
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Database, QueryKey, utcnow


def create_key(principal: Principal, database_ident, payload: dict) -> dict:
    data = schemas.load(schemas.shared(schemas.QueryKeySchema), payload)
    with db.transaction():
        database = _lock(principal, database_ident)
        secret = _database_secret(database)
        row = QueryKey.create(customer=principal.customer_id, database=database.id,
                              key_id=secrets.token_hex(8), **data)
        publish(database)
    row.key = make_query_key(secret, row.key_id)
    return schemas.shared(schemas.QueryKeySchema).dump(row)


def list_keys(principal: Principal, database_ident, *, limit: int | None = None,
              cursor: str | None = None) -> pagination.Page:
    """One page of the database's live keys, oldest first."""
    database = owned(Database, principal, database_ident, "database")
    return pagination.page(QueryKey.live_for(database.id), limit, cursor,
                           schemas.shared(schemas.QueryKeySchema, exclude=("key",), many=True).dump)


def revoke_key(principal: Principal, database_ident, key_ident) -> None:
    """Revoke at once; revoking a revoked key again is a no-op."""
    key_uuid = parse_uuid(key_ident, "api key id")
    with db.transaction():
        database = _lock(principal, database_ident)
        row = QueryKey.select().where((QueryKey.id == key_uuid) & (QueryKey.database == database.id)).first()
        if row is None:
            raise NotFound(f"api key {key_ident} was not found on this database")
        if row.revoked_at is None:
            QueryKey.update(revoked_at=utcnow()).where(QueryKey.id == row.id).execute()
            publish(database)


def revoke_all(database: Database) -> int:
    """Revoke every live key of `database` and publish that; returns how many were live.

    For a database that goes away (delete, terminate): its keys stop working
    everywhere at once, in the store and, within seconds, in a running instance.
    The caller holds the database's row lock (`Database.lock_owned`) in the
    transaction this runs in, so no key is created meanwhile.
    """
    revoked = (QueryKey.update(revoked_at=utcnow())
               .where((QueryKey.database == database.id) & QueryKey.revoked_at.is_null()).execute())
    publish(database)
    return revoked


def publish(database: Database) -> None:
    """Hand the database's secret and every live key (with its expiry) to its instances."""
    if database.query_key_secret_encrypted is None:
        return
    keys = {key.key_id: schemas.rfc3339(key.expires_at) for key in QueryKey.live_for(database.id)}
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


def _lock(principal: Principal, ident) -> Database:
    # The row lock orders concurrent key changes, so keys files are written in commit order.
    return owned(Database, principal, ident, "database", lock=True)
