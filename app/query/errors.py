"""Errors raised by the query language: plain exceptions, safe to show to clients."""

from __future__ import annotations

from collections.abc import Iterable

from app.contracts.query_limits import LIMIT_SPECS

from .nodes import Location

# How many available names an UnknownNameError lists before it says "...".
_MAX_LISTED_NAMES = 40


class QueryError(Exception):
    """A query that cannot be run; `str(error)` is a client-safe message.

    `position` (0-based offset in the query text), `line` and `column` (both
    1-based) point at the offending part when it is known, and the message
    then starts with `line L, column C: `. `reason` is the message without
    that prefix. A `Location` can be given as `at` instead of the three.
    """

    def __init__(self, reason: str, *, at: Location | None = None,
                 position: int | None = None, line: int | None = None,
                 column: int | None = None):
        if at is not None:
            position, line, column = at.position, at.line, at.column
        self.reason = reason
        self.position = position
        self.line = line
        self.column = column
        if line is not None and column is not None:
            message = f"line {line}, column {column}: {reason}"
        else:
            message = reason
        self.message = message
        super().__init__(message)


class QuerySyntaxError(QueryError):
    """The text does not follow the grammar; always carries a position."""

    def __init__(self, reason: str, *, position: int, line: int, column: int):
        super().__init__(reason, position=position, line=line, column=column)


class QueryLimitError(QueryError):
    """The query asks for more than one of the instance's limits allows.

    `limit` is the limit's name as in the settings file (camelCase, e.g.
    "maxSelectionDepth") and `value` its value; the message names both.
    """

    def __init__(self, reason: str, *, limit: str, value: int, at: Location | None = None,
                 hint: str | None = None):
        self.limit = LIMIT_SPECS[limit].name
        self.value = value
        reason = f"{reason} (limit {self.limit} = {value})"
        super().__init__(f"{reason}; {hint}" if hint else reason, at=at)


class UnknownNameError(QueryError):
    """A table, field or relation that does not exist (or is not exposed).

    `kind` is "table", "field", "relation" or "field or relation"; `name` the
    name as written; `table` the exposed name (alias) of the table it was
    looked up on (None for a table); `available` the names that would have
    been accepted there.
    """

    def __init__(self, kind: str, name: str, *, table: str | None,
                 available: Iterable[str], at: Location | None = None):
        self.kind = kind
        self.name = name
        self.table = table
        self.available = tuple(available)
        where = f" on table '{table}'" if table is not None else ""
        reason = f"unknown {kind} '{name}'{where}"
        if self.available:
            listed = ", ".join(self.available[:_MAX_LISTED_NAMES])
            if len(self.available) > _MAX_LISTED_NAMES:
                listed += ", ..."
            reason += f" (available: {listed})"
        super().__init__(reason, at=at)


__all__ = ["QueryError", "QueryLimitError", "QuerySyntaxError", "UnknownNameError"]
