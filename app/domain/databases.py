"""Databases (instances): one schema of one connection, with its instance settings."""

from __future__ import annotations

from peewee import IntegrityError

from app.domain import catalog, schemas
from app.domain.environment import current
from app.domain.errors import Conflict, InvalidRequest, NotFound, PlanRequired
from app.domain.ids import get_owned
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Connection, Database, utcnow

# Contract §4: mysqlDb may change only in these statuses.
SCHEMA_CHANGE_STATUSES = ("registered", "failed", "stopped")
# Contract §6: Delete is allowed only from these statuses.
DELETE_STATUSES = ("registered", "stopped", "terminated")
# Wire field (after marshmallow) -> model column, for PATCH.
_COLUMNS = {
    "name": "name",
    "mysql_db": "mysql_db",
    "instance_size": "instance_size",
    "log_level": "log_level",
    "binlog_server_id": "binlog_server_id",
    "build_compute_override": "build_compute_override",
    "custom_domain": "custom_domain",
    "pause_schedule": "pause_schedule",
    "tags": "tags",
    "sync_mode": "sync_mode",
    "sync_interval": "sync_interval",
}


def list_databases(principal: Principal) -> list[dict]:
    rows = Database.active_for(principal.customer_id).order_by(Database.created_at, Database.id)
    return schemas.DatabaseOut(many=True).dump(rows)


def get_database(principal: Principal, ident) -> dict:
    return schemas.DatabaseOut().dump(_owned(principal, ident))


def create_database(principal: Principal, payload: dict) -> dict:
    """Register a database under one of the caller's connections (status `registered`)."""
    data = schemas.load(schemas.DatabaseCreateSchema(), payload)
    with db.atomic():
        connection = Connection.lock_active(principal.customer_id, data.pop("connection_id"))
        if connection is None:
            raise InvalidRequest("connectionId: no such connection in this account")
        row = insert_database(principal, connection, data)
    return schemas.DatabaseOut().dump(row)


def insert_database(principal: Principal, connection: Connection, data: dict) -> Database:
    """Insert a database on `connection`, which the caller holds locked (see Connection.lock_active)."""
    if data["mysql_db"] not in connection.available_schemas:
        raise InvalidRequest(
            f"mysqlDb: {data['mysql_db']!r} is not in the connection's availableSchemas "
            f"({', '.join(connection.available_schemas)})"
        )
    _ensure_name_free(connection, data["name"])
    if data.get("binlog_server_id") is not None:
        _ensure_binlog_server_id_free(principal, connection, data["binlog_server_id"])
    try:
        return Database.create(
            customer=principal.customer_id,
            connection=connection.id,
            name=data["name"],
            mysql_db=data["mysql_db"],
            # A new database takes the connection's policy: CDC when it allows it.
            sync_mode=connection.sync_mode,
            sync_interval=connection.sync_interval,
            instance_size=data["instance_size"],
            log_level=data["log_level"],
            binlog_server_id=data.get("binlog_server_id"),
            tags=[],
            region=current().region,
        )
    except IntegrityError:
        raise _name_taken(data["name"]) from None


def update_database(principal: Principal, ident, payload: dict) -> dict:
    """Partial update; `mysqlDb` changes under the connection lock, like database creation."""
    data = schemas.load(schemas.DatabaseUpdateSchema(), payload)
    row = _owned(principal, ident)
    if not data:
        return schemas.DatabaseOut().dump(row)
    with db.atomic():
        connection = Connection.lock_active(principal.customer_id, row.connection_id)
        row = Database.active().where(Database.id == row.id).first() if connection else None
        if row is None:
            raise NotFound(f"database {ident} was not found")
        changes = {c: data[f] for f, c in _COLUMNS.items() if f in data and getattr(row, c) != data[f]}
        _check_changes(principal, connection, row, changes)
        if not changes:
            return schemas.DatabaseOut().dump(row)
        changes["updated_at"] = utcnow()
        try:
            Database.update(**changes).where(Database.id == row.id).execute()
        except IntegrityError:
            raise Conflict(_unique_violation_message(changes), _unique_violation_code(changes)) from None
        for column, value in changes.items():
            setattr(row, column, value)
    return schemas.DatabaseOut().dump(row)


def delete_database(principal: Principal, ident) -> None:
    """Soft delete: kept for audit, gone from listings and from the schema-usage check."""
    with db.atomic():
        row = _owned(principal, ident)
        if row.status not in DELETE_STATUSES:
            raise Conflict(
                f"a database can be deleted only while {_statuses(DELETE_STATUSES)}; "
                f"this one is {row.status}",
                "invalid_state",
            )
        Database.update(deleted_at=utcnow(), updated_at=utcnow()).where(Database.id == row.id).execute()


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


def _owned(principal: Principal, ident) -> Database:
    return get_owned(Database.active(), Database, ident, principal, "database")


def _check_changes(principal: Principal, connection: Connection, row: Database, changes: dict) -> None:
    """The PATCH rules that need stored state: 400 for bad values, 403/409 for conflicts."""
    if "mysql_db" in changes:
        if row.status not in SCHEMA_CHANGE_STATUSES:
            raise Conflict(
                f"mysqlDb can change only while the database is {_statuses(SCHEMA_CHANGE_STATUSES)}; "
                f"it is {row.status}",
                "invalid_state",
            )
        if changes["mysql_db"] not in connection.available_schemas:
            raise InvalidRequest(
                f"mysqlDb: {changes['mysql_db']!r} is not in the connection's availableSchemas "
                f"({', '.join(connection.available_schemas)})"
            )
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
        taken = Database.active().where(
            (Database.custom_domain == changes["custom_domain"]) & (Database.id != row.id)).exists()
        if taken:
            raise Conflict(_unique_violation_message({"custom_domain": changes["custom_domain"]}),
                           "domain_taken")
    if "name" in changes:
        _ensure_name_free(connection, changes["name"])
    if changes.get("binlog_server_id") is not None:
        _ensure_binlog_server_id_free(principal, connection, changes["binlog_server_id"], row.id)


def _ensure_name_free(connection: Connection, name: str) -> None:
    if Database.active_on(connection.id).where(Database.name == name).exists():
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a database named {name!r} already exists on this connection", "name_taken")


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


def _unique_violation_code(changes: dict) -> str:
    return "domain_taken" if "custom_domain" in changes else "name_taken"


def _unique_violation_message(changes: dict) -> str:
    if "custom_domain" in changes:
        return f"the custom domain {changes['custom_domain']!r} is already taken"
    return f"a database named {changes.get('name')!r} already exists on this connection"


def _statuses(statuses) -> str:
    return ", ".join(statuses[:-1]) + " or " + statuses[-1]

