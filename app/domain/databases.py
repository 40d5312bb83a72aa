"""Databases (instances): one schema of one connection, with its instance settings."""

from __future__ import annotations

from peewee import IntegrityError

from app.domain import catalog, etags, pagination, query_keys, schemas
from app.domain.environment import current
from app.domain.errors import Conflict, InvalidRequest, NotFound, PlanRequired
from app.domain.ids import owned, parse_uuid
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Connection, Database, utcnow, violated_unique_index

# Contract §4: mysqlDb may change only in these statuses.
SCHEMA_CHANGE_STATUSES = ("registered", "failed", "stopped")
# Contract §6: Delete is allowed only from these statuses.
DELETE_STATUSES = ("registered", "stopped", "terminated")
# The unique indexes among live databases (migration 0001).
NAME_INDEX = "database_name_live"
DOMAIN_INDEX = "database_custom_domain_live"


def list_databases(principal: Principal, *, limit: int | None = None, cursor: str | None = None,
                   connection_id=None, status: str | None = None) -> pagination.Page:
    """One page of the caller's live databases, oldest first, optionally of one connection or status.

    A connection that is not the caller's (or does not exist) filters to an empty list.
    """
    query = Database.owned_by(principal.customer_id)
    if connection_id is not None:
        query = query.where(Database.connection == parse_uuid(connection_id, "connectionId"))
    if status is not None:
        if status not in catalog.STATUSES:
            raise InvalidRequest(f"status: {status!r} is not one of {', '.join(catalog.STATUSES)}")
        query = query.where(Database.status == status)
    return pagination.page(query, limit, cursor, dump_many)


def dump_many(rows) -> list[dict]:
    """Databases as a list answer shows them."""
    return schemas.shared(schemas.DatabaseSchema, many=True).dump(rows)


def get_database(principal: Principal, ident) -> dict:
    return schemas.shared(schemas.DatabaseSchema).dump(owned(Database, principal, ident, "database"))


def etag(answer: dict) -> str:
    """The ETag of a database as an answer shows it (GET, PATCH, POST)."""
    return etags.etag(answer)


def create_database(principal: Principal, payload: dict) -> dict:
    """Register a database under one of the caller's connections (status `registered`)."""
    create = schemas.shared(schemas.DatabaseSchema, only=schemas.DatabaseSchema.CREATE_FIELDS)
    data = schemas.load(create, payload)
    with db.transaction():
        connection = Connection.lock_owned(principal.customer_id, data.pop("connection_id"))
        if connection is None:
            raise InvalidRequest("connectionId: no such connection in this account")
        row = insert_database(principal, connection, data)
    return schemas.shared(schemas.DatabaseSchema).dump(row)


def insert_database(principal: Principal, connection: Connection, data: dict, *, path: str = "") -> Database:
    """Insert a database on `connection`, which the caller holds locked (see Connection.lock_owned).

    `data` is loaded by DatabaseSchema (its INSTANCE_FIELDS); `path` is where the
    database sits in the request, for messages (`instance` inside POST /connections).
    """
    _ensure_schema_available(connection, data["mysql_db"], path)
    _ensure_name_free(connection, data["name"])
    if data.get("binlog_server_id") is not None:
        _ensure_binlog_server_id_free(principal, connection, data["binlog_server_id"])
    try:
        return Database.create(
            customer=principal.customer_id,
            connection=connection.id,
            # A new database takes the connection's policy: CDC when it allows it.
            sync_mode=connection.sync_mode,
            sync_interval=connection.sync_interval,
            tags=[],
            region=current().region,
            **data,
        )
    except IntegrityError as exc:
        conflict = _unique_conflict(exc, data)
        if conflict is None:
            raise
        raise conflict from None


def update_database(principal: Principal, ident, payload: dict, *, if_match: str | None = None) -> dict:
    """Partial update; `mysqlDb` changes under the connection lock, like database creation.

    With `if_match`, 412 precondition_failed unless it matches the database's ETag,
    checked under the database's row lock, which the update is written under.
    """
    update = schemas.shared(schemas.DatabaseSchema, only=schemas.DatabaseSchema.UPDATE_FIELDS)
    data = schemas.load(update, payload, partial=True)
    row = owned(Database, principal, ident, "database")
    if not data:
        _ensure_unchanged(row, if_match)
        return schemas.shared(schemas.DatabaseSchema).dump(row)
    with db.transaction():
        connection = Connection.lock_owned(principal.customer_id, row.connection_id)
        # Read again under the locks (the connection's, then the database's: no writer takes
        # them the other way round): the database may have been deleted or changed meanwhile.
        row = Database.lock_owned(principal.customer_id, row.id) if connection else None
        if row is None:
            raise NotFound(f"database {ident} was not found")
        _ensure_unchanged(row, if_match)
        changes = {column: value for column, value in data.items() if getattr(row, column) != value}
        _check_changes(principal, connection, row, changes)
        if not changes:
            return schemas.shared(schemas.DatabaseSchema).dump(row)
        changes["updated_at"] = utcnow()
        try:
            Database.update(**changes).where(Database.id == row.id).execute()
        except IntegrityError as exc:
            conflict = _unique_conflict(exc, changes)
            if conflict is None:
                raise
            raise conflict from None
        for column, value in changes.items():
            setattr(row, column, value)
    return schemas.shared(schemas.DatabaseSchema).dump(row)


def delete_database(principal: Principal, ident, *, if_match: str | None = None) -> None:
    """Soft delete: kept for audit, gone from listings and the schema-usage check; its query keys stop working.

    With `if_match`, only while it matches the database's ETag (else 412).
    """
    with db.transaction():
        # The row lock orders this with query-key changes (see query_keys).
        row = owned(Database, principal, ident, "database", lock=True)
        _ensure_unchanged(row, if_match)
        if row.status not in DELETE_STATUSES:
            raise Conflict(
                f"a database can be deleted only while {_statuses(DELETE_STATUSES)}; "
                f"this one is {row.status}",
                "invalid_state",
            )
        now = utcnow()
        Database.update(deleted_at=now, updated_at=now).where(Database.id == row.id).execute()
        query_keys.revoke_all(row)


def apply_sync_policy(connection: Connection) -> None:
    """Bring the connection's databases within its (possibly narrowed) sync policy, set-based."""
    allowed = catalog.allowed_sync_modes(connection.backend, connection.sync_mode)
    now = utcnow()
    live = Database.deleted_at.is_null() & (Database.connection == connection.id)
    Database.update(sync_mode="poll", updated_at=now).where(
        live & Database.sync_mode.not_in(allowed)).execute()
    Database.update(sync_interval=connection.sync_interval, updated_at=now).where(
        live & (Database.sync_interval < connection.sync_interval)).execute()


# -- helpers -----------------------------------------------------------------


def _ensure_unchanged(row: Database, if_match: str | None) -> None:
    """412 unless `if_match` (None: no precondition) matches the database as stored now."""
    etags.ensure_matches(if_match, lambda: schemas.shared(schemas.DatabaseSchema).dump(row),
                         f"database {row.id}")


def _check_changes(principal: Principal, connection: Connection, row: Database, changes: dict) -> None:
    """The PATCH rules that need stored state: 400 for bad values, 403/409 for conflicts."""
    if "mysql_db" in changes:
        if row.status not in SCHEMA_CHANGE_STATUSES:
            raise Conflict(
                f"mysqlDb can change only while the database is {_statuses(SCHEMA_CHANGE_STATUSES)}; "
                f"it is {row.status}",
                "invalid_state",
            )
        _ensure_schema_available(connection, changes["mysql_db"])
    allowed_modes = catalog.allowed_sync_modes(connection.backend, connection.sync_mode)
    if "sync_mode" in changes and changes["sync_mode"] not in allowed_modes:
        raise InvalidRequest(
            f"syncMode: {changes['sync_mode']!r} is not allowed by the connection "
            f"(allowedSyncModes: {', '.join(allowed_modes)})"
        )
    if "sync_interval" in changes and changes["sync_interval"] < connection.sync_interval:
        raise InvalidRequest(
            f"syncInterval: must be at least the connection's minSyncInterval "
            f"({connection.sync_interval})"
        )
    if changes.get("custom_domain") is not None:
        if principal.plan not in catalog.CUSTOM_DOMAIN_PLANS:
            raise PlanRequired("reflexdbCustomDomain needs the teams plan or above")
        _ensure_domain_free(row, changes["custom_domain"])
    if "name" in changes:
        _ensure_name_free(connection, changes["name"])
    if changes.get("binlog_server_id") is not None:
        _ensure_binlog_server_id_free(principal, connection, changes["binlog_server_id"], row.id)


def _ensure_schema_available(connection: Connection, mysql_db: str, path: str = "") -> None:
    """A database uses one of its connection's availableSchemas (checked under the connection lock)."""
    if mysql_db not in connection.available_schemas:
        raise InvalidRequest(
            f"{schemas.field_path(path, 'mysqlDb')}: {mysql_db!r} is not in the connection's "
            f"availableSchemas ({', '.join(connection.available_schemas)})"
        )


def _ensure_name_free(connection: Connection, name: str) -> None:
    if Database.active_on(connection.id).where(Database.name == name).exists():
        raise _name_taken(name)


def _ensure_domain_free(row: Database, domain: str) -> None:
    if Database.active().where((Database.custom_domain == domain) & (Database.id != row.id)).exists():
        raise _domain_taken(domain)


def _ensure_binlog_server_id_free(principal: Principal, connection: Connection, server_id: int,
                                  exclude_id=None) -> None:
    """binlogServerId is unique among the replicas of one source server (same host and port)."""
    query = (
        Database.active().join(Connection)
        .where(
            (Database.customer == principal.customer_id)
            & (Database.binlog_server_id == server_id)
            & (Connection.host == connection.host)
            & (Connection.port == connection.port)
        )
    )
    if exclude_id is not None:
        query = query.where(Database.id != exclude_id)
    if query.exists():
        raise Conflict(
            f"binlogServerId {server_id} is already used by another database replicating from "
            f"{connection.host}:{connection.port}",
            "binlog_server_id_taken",
        )


def _unique_conflict(error: IntegrityError, values: dict) -> Conflict | None:
    """The conflict a write that broke a unique index means, by the index the store names."""
    index = violated_unique_index(error)
    if index == NAME_INDEX:
        return _name_taken(values["name"])
    if index == DOMAIN_INDEX:
        return _domain_taken(values["custom_domain"])
    return None


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a database named {name!r} already exists on this connection", "name_taken")


def _domain_taken(domain: str) -> Conflict:
    return Conflict(f"the custom domain {domain!r} is already taken", "domain_taken")


def _statuses(statuses) -> str:
    return ", ".join(statuses[:-1]) + " or " + statuses[-1]
