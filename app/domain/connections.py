"""Connections: a customer's source server, the schemas it exposes and its sync policy."""

from __future__ import annotations

from peewee import IntegrityError

from app.contracts.backends import sync_modes
from app.domain import databases, etags, pagination, schemas
from app.domain.environment import current
from app.domain.errors import Conflict, InvalidRequest
from app.domain.ids import owned
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Connection, Database, utcnow, violated_unique_index

CREDENTIAL_FIELDS = ("host", "port", "user", "password_encrypted")
# The unique index of live connection names (migration 0001).
NAME_INDEX = "connection_name_live"
# The columns a connection's databases must stay within (databases.apply_sync_policy).
SYNC_POLICY_FIELDS = frozenset({"backend", "sync_mode", "sync_interval"})
# GET /connections/{id} shows at most this many of its databases, the oldest, and
# `databaseCount`; GET /databases?connectionId=… pages through all of them.
EMBEDDED_DATABASES = 100
# A schema_in_use message names at most this many schemas, and this many databases
# of each (the first by name), so it stays short however many databases there are.
IN_USE_SCHEMAS_NAMED = 5
IN_USE_DATABASES_NAMED = 3
# Past this many users a schema's count says "more than": counting stays bounded (docs/architecture.md).
USE_COUNT_CAP = 1000
# What GET /connections/{id} embeds: other resources (with ETags of their own), not part of the connection's.
EMBEDDED_FIELDS = ("databases", "databaseCount")


def list_connections(principal: Principal, *, limit: int | None = None,
                     cursor: str | None = None) -> pagination.Page:
    """One page of the caller's live connections, oldest first."""
    return pagination.page(Connection.owned_by(principal.customer_id), limit, cursor,
                           lambda rows: _schema().dump(rows, many=True))


def get_connection(principal: Principal, ident) -> dict:
    return _dump_with_databases(owned(Connection, principal, ident, "connection"))


def etag(answer: dict) -> str:
    """The ETag of the connection an answer shows: its own fields, not the databases it embeds."""
    return etags.etag({name: value for name, value in answer.items() if name not in EMBEDDED_FIELDS})


def create_connection(principal: Principal, payload: dict) -> dict:
    """Create a connection, and its first database when `instance` is given: both or neither."""
    data = schemas.load(schemas.shared(schemas.ConnectionSchema), payload)
    instance = data.pop("instance", None)
    _ensure_sync_mode_fits(data["backend"], data["sync_mode"])
    password_encrypted = current().secret_box.encrypt(data.pop("password"))
    with db.transaction():
        _ensure_name_free(principal, data["name"])
        try:
            connection = Connection.create(customer=principal.customer_id,
                                           password_encrypted=password_encrypted, **data)
        except IntegrityError as exc:
            if violated_unique_index(exc) != NAME_INDEX:
                raise
            raise _name_taken(data["name"]) from None
        if instance is not None:
            databases.insert_database(principal, connection, instance, path="instance")
    if instance is None:
        return _schema().dump(connection)
    return _dump_with_databases(connection)


def update_connection(principal: Principal, ident, payload: dict, *, if_match: str | None = None) -> dict:
    """PATCH semantics of contract §5: partial, all-or-nothing, schema-in-use guarded.

    With `if_match`, 412 precondition_failed unless it matches the connection's ETag,
    checked under the row lock the update is written under.
    """
    update = schemas.shared(schemas.ConnectionSchema, exclude=schemas.ConnectionSchema.CREATE_ONLY)
    data = schemas.load(update, payload, partial=True)
    if not data:
        connection = owned(Connection, principal, ident, "connection")
        _ensure_unchanged(connection, if_match)
        return _schema().dump(connection)
    with db.transaction():
        connection = owned(Connection, principal, ident, "connection", lock=True)
        _ensure_unchanged(connection, if_match)
        if "sync_mode" in data:
            _ensure_sync_mode_fits(connection.backend, data["sync_mode"])
        changes = _changes(connection, data)
        if "available_schemas" in changes:
            _ensure_schemas_unused(connection, changes["available_schemas"])
        # A new name is checked by the unique index the UPDATE meets (the IntegrityError below):
        # a SELECT first would be one statement more for the same answer.
        if not changes:
            return _schema().dump(connection)
        if any(column in changes for column in CREDENTIAL_FIELDS):
            # Running instances keep what they were deployed with; the version
            # tells the lifecycle engine which of them now hold stale credentials.
            changes["credentials_version"] = connection.credentials_version + 1
        changes["updated_at"] = utcnow()
        try:
            Connection.update_row(connection.id, **changes)
        except IntegrityError as exc:
            if violated_unique_index(exc) != NAME_INDEX:
                raise
            raise _name_taken(changes["name"]) from None
        for column, value in changes.items():
            setattr(connection, column, value)
        if changes.keys() & SYNC_POLICY_FIELDS:
            databases.apply_sync_policy(connection)
    return _schema().dump(connection)


def delete_connection(principal: Principal, ident, *, if_match: str | None = None) -> None:
    """Soft-delete a connection that no live database uses any more (and that `if_match`, if given, matches)."""
    with db.transaction():
        connection = owned(Connection, principal, ident, "connection", lock=True)
        _ensure_unchanged(connection, if_match)
        names = [d.name for d in Database.active_on(connection.id).order_by(Database.name).limit(11)]
        if names:
            listed = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
            raise Conflict(
                f"connection {connection.name!r} still has databases ({listed}); "
                "delete them first",
                "connection_in_use",
            )
        now = utcnow()
        Connection.update(deleted_at=now, updated_at=now).where(Connection.id == connection.id).execute()


# -- helpers -----------------------------------------------------------------


def _schema() -> schemas.ConnectionSchema:
    """The connection as answers show it, without its databases (which _dump_with_databases adds)."""
    return schemas.shared(schemas.ConnectionSchema, exclude=("databases",))


def _ensure_unchanged(connection: Connection, if_match: str | None) -> None:
    """412 unless `if_match` (None: no precondition) matches the connection as stored now."""
    etags.ensure_matches(if_match, lambda: _schema().dump(connection), f"connection {connection.id}")


def _dump_with_databases(connection: Connection) -> dict:
    """The connection with `databaseCount` and its first databases: at most EMBEDDED_DATABASES, oldest first.

    One statement when the page holds them all (the count is then its length), two
    otherwise (the page, the count); the page is bounded in bytes like every list page
    (pagination.MAX_PAGE_BYTES).
    """
    first = pagination.page_of_rows(Database.first_live_on(connection.id, EMBEDDED_DATABASES + 1),
                                    EMBEDDED_DATABASES, databases.dump_many)
    count = len(first.items) if first.next_cursor is None else Database.active_on(connection.id).count()
    return {**_schema().dump(connection), "databaseCount": count, "databases": first.items}


def _ensure_sync_mode_fits(backend: str, mode: str) -> None:
    """A connection's syncMode is poll or its backend's CDC mode (contract §5, sync policy)."""
    allowed = sync_modes(backend)
    if mode not in allowed:
        raise InvalidRequest(
            f"syncMode: must be {' or '.join(repr(m) for m in allowed)} for backend {backend!r}"
        )


def _changes(connection: Connection, data: dict) -> dict:
    """Model columns whose value the request actually changes."""
    changes = {column: value for column, value in data.items()
               if column != "password" and getattr(connection, column) != value}
    if "password" in data:
        box = current().secret_box
        if box.decrypt(connection.password_encrypted) != data["password"]:
            changes["password_encrypted"] = box.encrypt(data["password"])
    return changes


def _ensure_schemas_unused(connection: Connection, new_schemas: list[str]) -> None:
    """409 schema_in_use if a live database uses a schema the new list leaves out.

    A database's schema is always one of its connection's `availableSchemas` (creating
    and moving databases check it under the same row lock), so only the schemas this
    change removes (at most 100) can be in use. One statement counts the users of each,
    every count capped at USE_COUNT_CAP + 1 index entries (served by the index
    database_schema_usage); only when it finds schemas in use do a few LIMITed selects
    fetch the names the message shows. Neither the work nor the message grows with the
    number of databases.
    """
    kept = set(new_schemas)
    removed = sorted(schema for schema in connection.available_schemas if schema not in kept)
    if not removed:
        return
    counts = [(schema, count) for schema, count in zip(removed, _capped_use_counts(connection, removed), strict=True)
              if count]
    if not counts:
        return
    live = (Database.connection == connection.id) & Database.deleted_at.is_null()
    described = []
    for schema, count in counts[:IN_USE_SCHEMAS_NAMED]:
        names = [name for (name,) in Database.select(Database.name)
                 .where(live & (Database.mysql_db == schema))
                 .order_by(Database.name).limit(IN_USE_DATABASES_NAMED).tuples()]
        described.append(_schema_usage(schema, count, names))
    if len(counts) > IN_USE_SCHEMAS_NAMED:
        more = len(counts) - IN_USE_SCHEMAS_NAMED
        described.append(f"and {more} more schema{'s' if more > 1 else ''} in use")
    raise Conflict(
        f"availableSchemas cannot drop a schema that a database uses: {'; '.join(described)}. "
        "Delete or move those databases first; nothing was changed.",
        "schema_in_use",
    )


def _capped_use_counts(connection: Connection, schemas: list[str]) -> list[int]:
    """Live databases of `connection` on each schema, in order; past USE_COUNT_CAP, USE_COUNT_CAP + 1."""
    param = db.param
    parts, params = [], []
    connection_id = Database.connection.db_value(connection.id)
    for number, schema in enumerate(schemas):
        # Each count reads at most USE_COUNT_CAP + 1 entries of the index, however many use it.
        parts.append(f"SELECT {number} AS n, (SELECT COUNT(*) FROM (SELECT 1 FROM databases "
                     f"WHERE connection_id = {param} AND deleted_at IS NULL AND mysql_db = {param} "
                     f"LIMIT {USE_COUNT_CAP + 1}) AS capped) AS uses")
        params += [connection_id, schema]
    counts = dict(db.execute_sql(" UNION ALL ".join(parts), params).fetchall())
    return [counts[number] for number in range(len(schemas))]


def _schema_usage(schema: str, count: int, names: list[str]) -> str:
    """`schema 's2' is used by 33,333 databases, e.g. 'g10001', …`: a count and the first names."""
    listed = ", ".join(repr(name) for name in names)
    if count == 1:
        return f"schema {schema!r} is used by database {listed}"
    if count <= len(names):
        return f"schema {schema!r} is used by databases {listed}"
    if count > USE_COUNT_CAP:
        return f"schema {schema!r} is used by more than {USE_COUNT_CAP:,} databases, e.g. {listed}, …"
    return f"schema {schema!r} is used by {count:,} databases, e.g. {listed}, …"


def _ensure_name_free(principal: Principal, name: str) -> None:
    if Connection.owned_by(principal.customer_id).where(Connection.name == name).exists():
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a connection named {name!r} already exists in this account", "name_taken")
