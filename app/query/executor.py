"""Runs a plan over a snapshot connection and builds the JSON-ready rows."""

from __future__ import annotations

import functools
import json
import sqlite3
from operator import itemgetter

from app.contracts.artifact import SchemaArtifact

from .errors import QueryError
from .parser import parse
from .planner import ChildPlan, ColumnOutput, NodePlan, Plan, compile_query, plan_query

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000


def execute(artifact: SchemaArtifact, connection: sqlite3.Connection, text: str, *,
            default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT) -> list[dict]:
    """Run query `text` over the snapshot in `connection`: a list of row objects."""
    return run_plan(compile_query(artifact, text), connection,
                    default_limit=default_limit, max_limit=max_limit)


def run_plan(plan: Plan, connection: sqlite3.Connection, *, default_limit: int = DEFAULT_LIMIT,
             max_limit: int = MAX_LIMIT) -> list[dict]:
    """Run a compiled plan: one statement per selection node that has parent rows."""
    for limit, at in plan.limits:
        if limit > max_limit:
            raise QueryError(f"LIMIT {limit} is more than the maximum of {max_limit}",
                             position=at.position, line=at.line, column=at.column)
    limit = plan.limit if plan.limit is not None else min(default_limit, max_limit)
    cursor = connection.cursor()
    # Rows are read by position whatever row factory the loader chose.
    cursor.row_factory = None
    try:
        rows = cursor.execute(plan.root.sql, (*plan.root.params, limit, plan.offset)).fetchall()
        return _build(plan.root, rows, cursor)
    finally:
        cursor.close()


class QueryEngine:
    """Queries over snapshots of one artifact, with plans cached by query text."""

    def __init__(self, artifact: SchemaArtifact, *, default_limit: int = DEFAULT_LIMIT,
                 max_limit: int = MAX_LIMIT, cache_size: int = 512):
        self.artifact = artifact
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.compile = functools.lru_cache(maxsize=cache_size)(self._compile)

    def _compile(self, text: str) -> Plan:
        return plan_query(self.artifact, parse(text))

    def execute(self, connection: sqlite3.Connection, text: str) -> list[dict]:
        """Run query `text` over the snapshot in `connection`."""
        return run_plan(self.compile(text), connection, default_limit=self.default_limit,
                        max_limit=self.max_limit)


def _build(node: NodePlan, rows: list[tuple], cursor: sqlite3.Cursor) -> list[dict]:
    related = [_fetch_children(child, rows, cursor) for child in node.children]
    # Resolve each output once per node, not once per row: this loop is the
    # hot path of every query.
    steps = []
    for output in node.outputs:
        if isinstance(output, ColumnOutput):
            steps.append((False, output.key, output.index, output.convert))
        else:
            child = node.children[output.child]
            steps.append((True, output.key, itemgetter(*child.parent_key),
                          (related[output.child], child.many)))
    objects = []
    for row in rows:
        item = {}
        for is_relation, key, where, extra in steps:
            if is_relation:
                groups, many = extra
                found = groups.get(where(row))
                item[key] = (list(found) if found else []) if many else found
            else:
                value = row[where]
                item[key] = extra(value) if extra is not None and value is not None else value
        objects.append(item)
    return objects


def _fetch_children(child: ChildPlan, parent_rows: list[tuple], cursor: sqlite3.Cursor) -> dict:
    """Parent key -> list of child objects (or the one object for a forward relation).

    Keys are scalars for one-column relations and tuples otherwise, on both
    sides (itemgetter's own convention).
    """
    parent_key = itemgetter(*child.parent_key)
    composite = len(child.parent_key) > 1
    keys = dict.fromkeys(parent_key(row) for row in parent_rows)
    keys = [key for key in keys if (None not in key if composite else key is not None)]
    if not keys:
        return {}
    payload = json.dumps([_json_key(key if composite else (key,)) for key in keys])
    rows = cursor.execute(child.node.sql, (payload, *child.node.params)).fetchall()
    link = itemgetter(*child.node.link)
    groups: dict = {}
    if child.many:
        for row, item in zip(rows, _build(child.node, rows, cursor), strict=True):
            groups.setdefault(link(row), []).append(item)
    else:
        for row, item in zip(rows, _build(child.node, rows, cursor), strict=True):
            groups.setdefault(link(row), item)
    return groups


def _json_key(key: tuple):
    # Bytes are not JSON: binary keys travel as upper-case hex, which the
    # statement matches against hex(column) (see ChildPlan.binary_key).
    values = [value.hex().upper() if isinstance(value, bytes) else value for value in key]
    return values[0] if len(values) == 1 else values


__all__ = ["execute", "run_plan", "QueryEngine", "DEFAULT_LIMIT", "MAX_LIMIT"]
