"""The OpenAPI 3.0 description of one instance: /query plus a schema per exposed table."""

from __future__ import annotations

import re

from app.contracts.artifact import Column, SchemaArtifact
from app.contracts.query_limits import DEFAULT_LIMITS, LIMIT_SPECS, QueryLimits

_JSON_TYPES = {
    "integer": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "decimal": {"type": "number"},
    "boolean": {"type": "boolean"},
    "text": {"type": "string"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "time": {"type": "string", "pattern": r"^\d{2}:\d{2}:\d{2}(\.\d+)?$"},
    "binary": {"type": "string", "format": "byte"},
    "json": {},   # any JSON value
}

# Each error status, its codes and when it is answered.
_ERRORS = {
    "400": "`invalid_query`: the query is malformed (with line and column) or names an unknown "
           "table or field. `limit_exceeded`: the query asks for more than one of the limits "
           "listed in the operation's description allows; the message names the limit and its "
           "value, and nothing of the answer is sent.",
    "401": "`unauthorized`: missing, malformed, unknown, expired or revoked query key.",
    "413": "`payload_too_large`: the query text is over `maxQueryBytes`.",
    "415": "`unsupported_media_type`: the body is not text/plain.",
    "500": "`internal_error`: unexpected error; the message carries a request id.",
    "503": "`snapshot_loading` (or `cap_exceeded`): no snapshot is served yet. `unavailable`: "
           "the instance has no memory left for this answer right now. Retry after "
           "`Retry-After` seconds.",
}


def component_name(alias: str) -> str:
    """A component key OpenAPI accepts for a table alias."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", alias) or "_"


def build_openapi(artifact: SchemaArtifact, *, database_id: str, server_url: str | None = None,
                  limits: QueryLimits = DEFAULT_LIMITS) -> dict:
    """The instance's OpenAPI document for `artifact`, with the limits it runs with."""
    schemas = {component_name(t.alias): _table_schema(artifact, t) for t in artifact.tables}
    schemas["Error"] = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "Stable snake_case code.",
                      "maxLength": 64},
            "message": {"type": "string", "description": "What was wrong and how to fix it.",
                        "maxLength": 4096},
        },
    }
    tables = ", ".join(t.alias for t in artifact.tables) or "(none)"
    responses = {
        "200": {
            "description": "The rows, in primary-key order unless ORDER BY says otherwise. Each "
                           "row has the selected fields of the root table's schema.",
            "content": {"application/json": {"schema": {
                "type": "array",
                "items": {"oneOf": [{"$ref": f"#/components/schemas/{component_name(t.alias)}"}
                                    for t in artifact.tables]} if artifact.tables else {},
            }}},
        },
    }
    for status, description in _ERRORS.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": f"ReflexDB instance {database_id}",
            "version": f"artifact-{artifact.version}",
            "description": f"Read-only query endpoint over a snapshot of the `{artifact.schema}` "
                           f"schema ({artifact.backend}). Tables: {tables}.",
        },
        "paths": {
            "/query": {
                "post": {
                    "operationId": "run_query",
                    "summary": "Run a query",
                    "description": "The body is a query in the ReflexDB query language, e.g. "
                                   "`posts { id author { name } comments(approved = true) "
                                   f"{{ body }} }}`. A root selection returns at most "
                                   f"{limits.default_limit} rows unless it says LIMIT.\n\n"
                                   + _limits_text(limits),
                    "security": [{"queryKey": []}],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {limits.max_query_bytes} bytes of UTF-8 "
                                       "(`maxQueryBytes`).",
                        "content": {"text/plain": {"schema": {
                            "type": "string", "maxLength": limits.max_query_bytes}}},
                    },
                    "responses": responses,
                    "x-query-limits": {spec.name: getattr(limits, name)
                                       for name, spec in LIMIT_SPECS.items()},
                },
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "queryKey": {"type": "http", "scheme": "bearer",
                             "bearerFormat": "rxk_<keyId>.<mac>",
                             "description": "A query key of this database."},
            },
        },
        "security": [{"queryKey": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def _limits_text(limits: QueryLimits) -> str:
    """The limits as a Markdown list, with the values this instance runs with."""
    lines = ["Limits (also in `x-query-limits`). Past `maxQueryBytes` the answer is 413 "
             "`payload_too_large`; past any other, 400 `limit_exceeded` naming the limit and "
             "its value. A query over a limit is refused whole, never answered in part.", ""]
    for name, spec in LIMIT_SPECS.items():
        lines.append(f"- `{spec.name}` = {getattr(limits, name)}: {spec.description}")
    return "\n".join(lines)


def _table_schema(artifact: SchemaArtifact, table) -> dict:
    properties = {}
    for column in table.columns:
        if not column.hidden:
            properties[column.field] = _column_schema(column)
    exposed = {t.alias for t in artifact.tables}
    for relation in artifact.relations_of(table.alias):
        if relation.target not in exposed:
            continue
        ref = {"$ref": f"#/components/schemas/{component_name(relation.target)}"}
        if relation.many:
            properties[relation.name] = {
                "type": "array", "items": ref,
                "description": f"Rows of {relation.target} referencing this row (only when "
                               f"selected).",
            }
        else:
            # nullable beside a $ref is ignored in OpenAPI 3.0: wrap it in allOf.
            properties[relation.name] = {
                "allOf": [ref], "nullable": True,
                "description": f"The {relation.target} row this row references, or null (only "
                               f"when selected).",
            }
    schema = {"type": "object", "properties": properties,
              "description": f"A row of {table.alias}"
                             + (f" (source table {table.name})" if table.name != table.alias
                                else "")
                             + (". Primary key: " + ", ".join(table.primary_key)
                                if table.primary_key else "") + "."}
    return schema


def _column_schema(column: Column) -> dict:
    schema = dict(_JSON_TYPES.get(column.type, {}))
    if column.nullable:
        schema["nullable"] = True
    description = column.note or f"{column.type} column {column.name}"
    if column.type == "json":
        description += " (any JSON value)"
    schema["description"] = description
    return schema


__all__ = ["build_openapi", "component_name"]
