"""One SQLite statement that returns a whole answer as the JSON bytes the Python path encodes.

The Python path (`app.query.executor`) fetches each selection node's rows and
builds the answer's objects; for a page of 50 posts with their authors and
comments that costs milliseconds of Python per request. For plans whose
every value SQLite can write exactly as orjson would, the planner also
builds this statement: each row object is a string concatenation, each
related list a correlated subquery aggregated with `group_concat`, and
the root statement returns the answer's bytes, which the server sends as
they are.

Exactness, value by value, by storage class (the Python path encodes what
SQLite returns, whose type is the storage class): integers as SQLite writes
them; text through `json_quote`, whose escapes are orjson's byte for byte
(control characters as `\\uXXXX` in lower case except `\\b \\t \\n \\f \\r`,
`"` and `\\`, nothing else escaped); NULL as `null`; booleans as `true` or
`false`. A REAL or BLOB value (whose JSON form SQLite writes differently),
met anywhere, calls `reflexdb_unsafe()`, which raises, and the query takes
the Python path. Plans with float, decimal, json or binary columns, binary
relation keys, or relation columns of differing types never get a
statement; neither do keys orjson cannot encode.

Relations: a reverse relation is the list of matching rows in the node's
order (with its LIMIT and OFFSET per parent); a forward one the first
matching row in that order, as the Python path keeps the first of a key's
rows. Key columns of the same logical type have the same SQLite affinity on
both sides, so `=` matches exactly the values the Python path's dictionary
lookup does (a NULL in a key matches nothing in either).

The limits are the executor's business (see `executor.answer_json`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import orjson

# Stands for a selection node's table alias in its filter and ORDER BY SQL
# until a statement puts the alias in (`t0` for the Python path's statements,
# `j<depth>` here). A NUL can be in no identifier and no SQL text of ours.
ALIAS = "\x00alias\x00"

# The function a statement calls on a value it cannot write exactly.
UNSAFE_FUNCTION = "reflexdb_unsafe"

# Logical column types whose values SQLite writes exactly as orjson does.
_SAFE_TYPES = frozenset({"integer", "boolean", "text", "date", "datetime", "time"})


@dataclass(frozen=True)
class JsonColumn:
    key: str       # the output key
    column: str    # the quoted source column
    kind: str      # its logical type


@dataclass(frozen=True)
class JsonRelation:
    key: str
    many: bool
    pairs: tuple[tuple[str, str], ...]  # (quoted parent column, quoted child column)
    node: "JsonNode"


@dataclass(frozen=True)
class JsonNode:
    """What one selection node contributes to the statement (its SQL holds `ALIAS`)."""

    table: str                    # quoted table name
    where: str | None             # the node's filter
    where_params: tuple
    order: str                    # ORDER BY terms, never empty (a tiebreak at least)
    entries: tuple[Union[JsonColumn, JsonRelation], ...]
    limit: object = None          # a child list's own LIMIT and OFFSET (int, Slot or None)
    offset: object = None
    usable: bool = True           # False: some value or key cannot be written exactly


def safe_type(kind: str) -> bool:
    return kind in _SAFE_TYPES


def encoded_key(key: str) -> str | None:
    """`"key":` as orjson writes it, as an SQL string literal; None if orjson cannot."""
    try:
        text = orjson.dumps(key).decode()
    except orjson.JSONEncodeError:
        return None
    return text


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _value(column_sql: str, kind: str) -> str:
    if kind == "boolean":
        exact = f"CASE WHEN {column_sql} THEN 'true' ELSE 'false' END"
    else:
        exact = column_sql
    # Python writes a value by its storage class, and so does this; text in
    # an integer column stays text in both.
    text = f" WHEN 'text' THEN json_quote({column_sql})" if kind != "boolean" else ""
    return (f"CASE typeof({column_sql}) WHEN 'integer' THEN {exact}{text} "
            f"WHEN 'null' THEN 'null' ELSE {UNSAFE_FUNCTION}() END")


def usable(node: JsonNode) -> bool:
    return node.usable and all(usable(entry.node) for entry in node.entries
                               if isinstance(entry, JsonRelation))


def statement(root: JsonNode) -> tuple[str, tuple]:
    """The root's statement (one row, one BLOB: the answer's JSON) and its parameters.

    The root's LIMIT and OFFSET are its last two parameters, not in the tuple:
    the executor binds them per run.
    """
    obj, params = _object(root, 0)
    where, where_params = _where(root, 0, ())
    # The page is chosen first and its objects built after: built in the
    # same SELECT, they would be built for every row a sort (or the OFFSET)
    # passes over. An aggregate over a subquery with a LIMIT is never
    # flattened into one, and reads the subquery's rows in its order.
    sql = (f"SELECT CAST('[' || COALESCE(group_concat({obj}, ','), '') || ']' AS BLOB) FROM "
           f"(SELECT j0.* FROM {root.table} AS j0{where} "
           f"ORDER BY {root.order.replace(ALIAS, 'j0')} LIMIT ? OFFSET ?) AS j0")
    return sql, (*params, *where_params)


def _where(node: JsonNode, depth: int, match: tuple[str, ...]) -> tuple[str, tuple]:
    alias = f"j{depth}"
    conditions = list(match)
    params: tuple = ()
    if node.where is not None:
        conditions.append(f"({node.where.replace(ALIAS, alias)})")
        params = node.where_params
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


def _object(node: JsonNode, depth: int) -> tuple[str, list]:
    """The SQL of one row object of `node` (a text expression), and its parameters in order."""
    alias = f"j{depth}"
    parts, params = [], []
    prefix = "{"
    for entry in node.entries:
        parts.append(_literal(prefix + entry.key + ":"))
        prefix = ","
        if isinstance(entry, JsonColumn):
            parts.append(_value(f"{alias}.{entry.column}", entry.kind))
            continue
        child, child_alias = entry.node, f"j{depth + 1}"
        match = tuple(f"{child_alias}.{child_column} = {alias}.{parent_column}"
                      for parent_column, child_column in entry.pairs)
        obj, obj_params = _object(child, depth + 1)
        where, where_params = _where(child, depth + 1, match)
        order = child.order.replace(ALIAS, child_alias)
        source = f"FROM {child.table} AS {child_alias}{where} ORDER BY {order}"
        params.extend(obj_params)
        params.extend(where_params)
        if not entry.many:
            parts.append(f"COALESCE((SELECT {obj} {source} LIMIT 1), 'null')")
            continue
        if child.limit is not None or child.offset is not None:
            # A page per parent: chosen first, as for the root.
            params.extend((-1 if child.limit is None else child.limit,
                           0 if child.offset is None else child.offset))
            parts.append(f"COALESCE((SELECT '[' || group_concat({obj}, ',') || ']' FROM "
                         f"(SELECT {child_alias}.* {source} LIMIT ? OFFSET ?) AS {child_alias}"
                         "), '[]')")
            continue
        parts.append(f"COALESCE((SELECT '[' || group_concat(o, ',') || ']' FROM "
                     f"(SELECT {obj} AS o {source})), '[]')")
    parts.append("'}'" if node.entries else "'{}'")
    return " || ".join(parts), params


__all__ = ["ALIAS", "UNSAFE_FUNCTION", "JsonColumn", "JsonNode", "JsonRelation", "encoded_key",
           "safe_type", "statement", "usable"]
