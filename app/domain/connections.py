"""Connections: a customer's source server, the schemas it exposes and its sync policy."""

from __future__ import annotations

from peewee import IntegrityError

from app.domain import catalog, databases, schemas
from app.domain.environment import current
from app.domain.errors import Conflict, InvalidRequest, NotFound
from app.domain.ids import get_owned, parse_uuid
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Connection, Database, utcnow

CREDENTIAL_FIELDS = ("host", "port", "user", "password_encrypted")
# Wire field (after marshmallow) -> model column.
_COLUMNS = {
    "name": "name",
    "mysql_host": "host",
    "mysql_port": "port",
    "available_schemas": "available_schemas",
    "mysql_user": "user",
    "sync_mode": "sync_mode",
    "sync_interval": "sync_interval",
}


def list_connections(principal: Principal) -> list[dict]:
    rows = Connection.active_for(principal.customer_id).order_by(Connection.created_at, Connection.id)
    return schemas.ConnectionOut(many=True).dump(rows)


def get_connection(principal: Principal, ident) -> dict:
    return _with_databases(_owned(principal, ident))


def create_connection(principal: Principal, payload: dict) -> dict:
    """Create a connection, and its first database when `instance` is given: both or neither."""
    data = schemas.load(schemas.ConnectionCreateSchema(), payload)
    instance = data.pop("instance", None)
    with db.atomic():
        _ensure_name_free(principal, data["name"])
        try:
            connection = Connection.create(
                customer=principal.customer_id,
                name=data["name"],
                backend=data["backend"],
                host=data["mysql_host"],
                port=data["mysql_port"],
                available_schemas=data["available_schemas"],
                user=data["mysql_user"],
                password_encrypted=current().secret_box.encrypt(data["mysql_password"]),
                sync_mode=data["sync_mode"],
                sync_interval=data["sync_interval"],
            )
        except IntegrityError:
            raise _name_taken(data["name"]) from None
        if instance is not None:
            databases.insert_database(principal, connection, instance)
    if instance is None:
        return schemas.ConnectionOut().dump(connection)
    return _with_databases(connection)


def update_connection(principal: Principal, ident, payload: dict) -> dict:
    """PATCH semantics of contract §5: partial, all-or-nothing, schema-in-use guarded."""
    data = schemas.load(schemas.ConnectionUpdateSchema(), payload)
    connection_id = parse_uuid(ident, "connection id")
    if not data:
        return schemas.ConnectionOut().dump(_owned(principal, connection_id))
    with db.atomic():
        connection = Connection.lock_active(principal.customer_id, connection_id)
        if connection is None:
            raise NotFound(f"connection {ident} was not found")
        changes = _changes(connection, data)
        if "sync_mode" in changes and changes["sync_mode"] not in ("poll", catalog.CDC_MODES[connection.backend]):
            raise InvalidRequest(
                f"syncMode: must be 'poll' or '{catalog.CDC_MODES[connection.backend]}' "
                f"for backend '{connection.backend}'"
            )
        if "available_schemas" in changes:
            _ensure_schemas_unused(connection, changes["available_schemas"])
        if "name" in changes:
            _ensure_name_free(principal, changes["name"])
        if not changes:
            return schemas.ConnectionOut().dump(connection)
        if any(column in changes for column in CREDENTIAL_FIELDS):
            # Running instances keep what they were deployed with; the version
            # tells the lifecycle engine which of them now hold stale credentials.
            changes["credentials_version"] = connection.credentials_version + 1
        changes["updated_at"] = utcnow()
        try:
            Connection.update(**changes).where(Connection.id == connection.id).execute()
        except IntegrityError:
            raise _name_taken(changes["name"]) from None
        for column, value in changes.items():
            setattr(connection, column, value)
        databases.apply_sync_policy(connection)
    return schemas.ConnectionOut().dump(connection)


def delete_connection(principal: Principal, ident) -> None:
    """Soft-delete a connection that no live database uses any more."""
    with db.atomic():
        connection = Connection.lock_active(principal.customer_id, parse_uuid(ident, "connection id"))
        if connection is None:
            raise NotFound(f"connection {ident} was not found")
        names = [d.name for d in Database.active_on(connection.id).order_by(Database.name).limit(11)]
        if names:
            listed = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
            raise Conflict(
                f"connection {connection.name!r} still has databases ({listed}); "
                "delete them first",
                "connection_in_use",
            )
        Connection.update(deleted_at=utcnow()).where(Connection.id == connection.id).execute()


# -- helpers -----------------------------------------------------------------


def _owned(principal: Principal, ident) -> Connection:
    return get_owned(Connection.active_for(principal.customer_id), Connection, ident, principal,
                     "connection")


def _with_databases(connection: Connection) -> dict:
    connection.live_databases = list(
        Database.active_on(connection.id).order_by(Database.created_at, Database.id)
    )
    return schemas.ConnectionWithDatabasesOut().dump(connection)


def _changes(connection: Connection, data: dict) -> dict:
    """Model columns whose value the request actually changes."""
    changes = {}
    for field, column in _COLUMNS.items():
        if field in data and getattr(connection, column) != data[field]:
            changes[column] = data[field]
    if "mysql_password" in data:
        box = current().secret_box
        if box.decrypt(connection.password_encrypted) != data["mysql_password"]:
            changes["password_encrypted"] = box.encrypt(data["mysql_password"])
    return changes


def _ensure_schemas_unused(connection: Connection, new_schemas: list[str]) -> None:
    """409 schema_in_use if a live database uses a schema the new list leaves out.

    One set-based query, whatever the number of databases.
    """
    in_use = list(
        Database.select(Database.name, Database.mysql_db)
        .where(
            (Database.connection == connection.id)
            & Database.deleted_at.is_null()
            & Database.mysql_db.not_in(new_schemas)
        )
        .order_by(Database.mysql_db, Database.name)
        .tuples()
    )
    if not in_use:
        return
    by_schema: dict[str, list[str]] = {}
    for name, schema in in_use:
        by_schema.setdefault(schema, []).append(name)
    detail = "; ".join(
        f"schema {schema!r} is used by database{'s' if len(names) > 1 else ''} "
        + ", ".join(repr(n) for n in names)
        for schema, names in by_schema.items()
    )
    raise Conflict(
        f"availableSchemas cannot drop a schema that a database uses: {detail}. "
        "Delete or move those databases first; nothing was changed.",
        "schema_in_use",
    )


def _ensure_name_free(principal: Principal, name: str) -> None:
    if Connection.active_for(principal.customer_id).where(Connection.name == name).exists():
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a connection named {name!r} already exists in this account", "name_taken")
