"""The per-database schema config (`reflexdb.yaml`), applied at the next provision or rebuild."""

from __future__ import annotations

from app.contracts.schema_config import ConfigError, load_config
from app.domain import schemas
from app.domain.errors import InvalidRequest
from app.domain.ids import owned
from app.domain.principal import Principal
from app.query import QueryError, parse_filter
from app.storage.database import db
from app.storage.models import Database, utcnow


def get_config(principal: Principal, database_ident) -> dict:
    return schemas.SchemaConfigSchema().dump(_owned(principal, database_ident))


def put_config(principal: Principal, database_ident, document) -> dict:
    """Validate and store a config given as YAML text (str/bytes) or as a JSON object."""
    database = _owned(principal, database_ident)
    try:
        config = load_config(document)
    except ConfigError as exc:
        extra = len(exc.errors) - 1
        more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra > 0 else ""
        raise InvalidRequest(f"schema config: {exc}{more}") from None
    _check_filters(config)
    with db.transaction():
        now = utcnow()
        Database.update(schema_config=config, schema_config_updated_at=now).where(
            Database.id == database.id).execute()
    database.schema_config, database.schema_config_updated_at = config, now
    return schemas.SchemaConfigSchema().dump(database)


def delete_config(principal: Principal, database_ident) -> None:
    """Remove the config: the next build serves every table again."""
    database = _owned(principal, database_ident)
    Database.update(schema_config=None, schema_config_updated_at=utcnow()).where(
        Database.id == database.id).execute()


def _check_filters(config: dict) -> None:
    """Syntax errors in `where` filters are reported now, with their position, not at build time."""
    filters = [("where", config.get("where"))] + [
        (f"tables[{i}].where", table.get("where")) for i, table in enumerate(config.get("tables", []))
    ]
    for path, text in filters:
        if text is None:
            continue
        try:
            parse_filter(text)
        except QueryError as exc:
            raise InvalidRequest(f"schema config: {path}: {exc}") from None


def _owned(principal: Principal, ident) -> Database:
    return owned(Database, principal, ident, "database")
