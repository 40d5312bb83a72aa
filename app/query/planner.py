"""Parsed query + artifact -> a plan: one SQLite statement per selection node."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

from app.contracts.artifact import Column, Relation, SchemaArtifact, Table
from app.contracts.query_limits import DEFAULT_LIMITS, QueryLimits

from .errors import QueryError, UnknownNameError
from .filters import FilterCompiler, Resolved, group_operands, quote_identifier
from .jsonsql import ALIAS, JsonColumn, JsonNode, JsonRelation, encoded_key, safe_type, statement, usable
from .nodes import FieldEntry, Literal, Location, Name, Path, Query, Selection, Wildcard
from .parser import parse

_STAR = (Wildcard(at=Location(0, 1, 1), with_relations=False),)


# -- the plan ---------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """A statement parameter taken from the query's literal values when the plan runs.

    Plans compiled for a query's shape (`app.query.shapes`) hold slots where a
    plan for one text holds the values; `answer_plan` binds them.
    """

    index: int                                      # the literal's number, in text order
    convert: Callable[[object], object] | None = None  # e.g. a LIKE pattern to GLOB
    plus: int | None = None                         # a literal added (a page's end: offset + limit)

    def bind(self, values: tuple):
        value = values[self.index]
        if self.plus is not None:
            value += values[self.plus]
        return value if self.convert is None else self.convert(value)


class LiteralSlots(Protocol):
    """Assigns slots to a parsed query's literals (see `app.query.shapes`)."""

    def value(self, literal: Literal, convert: Callable | None) -> Slot | object: ...

    def count(self, keyword_at: Location, value: int, role: str) -> Slot: ...


@dataclass(frozen=True)
class ColumnOutput:
    key: str                                   # output field name
    index: int                                 # position in the node's fetched row
    convert: Callable[[object], object] | None  # snapshot value -> JSON value


@dataclass(frozen=True)
class RelationOutput:
    key: str    # output relation name
    child: int  # position in the node's `children`


@dataclass(frozen=True)
class ChildPlan:
    """How a nested selection hangs off its parent node."""

    many: bool                      # array (reverse) or object/null (forward)
    parent_key: tuple[int, ...]     # parent row positions holding the relation's columns
    binary_key: tuple[bool, ...]    # key columns matched through hex() (bytes are not JSON)
    node: "NodePlan"


@dataclass(frozen=True)
class NodePlan:
    """One selection: its statement, and how its rows become output objects.

    A child node's statement takes the JSON array of parent keys as its first
    parameter, then `params`; the root's takes `params`, then LIMIT and OFFSET.
    `params` may hold `Slot`s, bound at run time.
    Each fetched row ends with the JSON size of its own fields as SQLite
    measures them; `fixed_size` adds what does not depend on the values
    (braces, keys, quotes, booleans, a comma), so a row object's size is
    `fixed_size + row[size_index]` plus the sizes of the related objects.
    """

    table: str                       # exposed table name, for messages
    sql: str
    params: tuple
    link: tuple[int, ...]            # row positions of the key matched to the parent
    outputs: tuple[Union[ColumnOutput, RelationOutput], ...]
    children: tuple[ChildPlan, ...]
    size_index: int
    fixed_size: int
    json: JsonNode | None = None     # its part of the plan's JSON statement (app.query.jsonsql)


@dataclass(frozen=True)
class Plan:
    """A compiled query; its LIMIT and OFFSET were checked against the limits it was parsed with.

    A plan for a query's shape holds `Slot`s for its literal values: run it
    with `answer_plan(..., values=...)`.
    """

    root: NodePlan
    limit: int | Slot | None         # the root's own LIMIT, if it gave one
    offset: int | Slot
    # One statement returning the whole answer as JSON, when SQLite can write
    # it exactly (app.query.jsonsql); its LIMIT and OFFSET parameters come last.
    json_sql: str | None = None
    json_params: tuple = ()


# -- entry points -----------------------------------------------------------

@functools.lru_cache(maxsize=256)
def compile_query(artifact: SchemaArtifact, text: str,
                  limits: QueryLimits = DEFAULT_LIMITS) -> Plan:
    """Parse `text` within `limits` and plan it against `artifact` (cached; all are immutable)."""
    return plan_query(artifact, parse(text, limits))


def plan_query(artifact: SchemaArtifact, query: Query, slots: LiteralSlots | None = None) -> Plan:
    """Resolve every name of `query` against `artifact` and build its statements.

    With `slots`, literal values become `Slot`s: a plan for every query of
    the same shape.
    """
    return _Planner(artifact, slots).plan(query)


# -- output conversion ------------------------------------------------------

def _to_bool(value):
    return bool(value)


def _to_json(value):
    if isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except ValueError:
            return value  # not JSON after all: serve the text rather than fail the query
    return value


def _to_base64(value):
    if isinstance(value, str):
        value = value.encode()
    return base64.b64encode(value).decode("ascii")


_CONVERTERS = {"boolean": _to_bool, "json": _to_json, "binary": _to_base64}

# JSON bytes a null takes, and the most a boolean does ("false").
_NULL_SIZE, _BOOLEAN_SIZE = 4, 5
# Types that are JSON strings: their text plus two quotes.
_QUOTED = frozenset({"text", "date", "datetime", "time"})


def _size_sql(column_sql: str, kind: str) -> str | None:
    """SQL measuring the JSON size of one value (None: a constant, in `_fixed_size`).

    Bytes as SQLite stores them (UTF-8 text, numbers as their text); escapes
    are not counted, which is why the encoded answer is checked again.
    """
    if kind == "boolean":
        return None
    length = f"length(CAST({column_sql} AS BLOB))"
    if kind == "binary":  # base64 and quotes
        length = f"(length({column_sql}) + 2) / 3 * 4 + 2"
    elif kind in _QUOTED:
        length += " + 2"
    return f"COALESCE({length}, {_NULL_SIZE})"


def _fixed_size(outputs: list) -> int:
    """JSON bytes of a row object that do not depend on its values."""
    size = 2  # braces; the commas after each entry also cover the one after the object
    for output in outputs:
        size += len(output.key.encode("utf-8", "surrogatepass")) + 4  # "key": and a comma
        if isinstance(output, RelationOutput):
            size += 2  # `[]` (or about a `null`); related objects add their own size
    return size


# -- planning ---------------------------------------------------------------

def _q(name: str) -> str:
    return quote_identifier(name, "sqlite")


def _source_column(table: Table, name: str) -> Column:
    for column in table.columns:
        if column.name == name:
            return column
    raise QueryError(f"the schema of table '{table.alias}' is inconsistent: "
                     f"column '{name}' is missing")


def _visible_fields(table: Table) -> list[str]:
    return [column.field for column in table.columns if not column.hidden]


def _rowid_name(table: Table) -> str | None:
    names = {column.name.lower() for column in table.columns}
    for candidate in ("rowid", "_rowid_", "oid"):
        if candidate not in names:
            return candidate
    return None


class _SnapshotFilter(FilterCompiler):
    """Resolves filter paths on the snapshot: `t0.col`, or EXISTS through relations."""

    def __init__(self, planner: "_Planner", table: Table, alias: str):
        super().__init__("sqlite")
        self.planner = planner
        self.table = table
        self.alias = alias
        self.aliases = 0

    def _value(self, literal: Literal, convert=None):
        slots = self.planner.slots
        if slots is None:
            return super()._value(literal, convert)
        return slots.value(literal, convert)

    def resolve(self, path: Path) -> Resolved:
        table, alias = self.table, self.alias
        hops = []
        for name in path.names[:-1]:
            relation = self.planner.artifact.relation(table.alias, name.text)
            if relation is None:
                if table.column(name.text) is not None:
                    raise QueryError(f"'{name.text}' on table '{table.alias}' is a field, not a "
                                     "relation: only relations can be followed with '.'",
                                     at=name.at)
                raise self.planner.unknown("relation", name, table)
            target = self.planner.target_of(relation, name.at)
            self.aliases += 1
            target_alias = f"t{self.aliases}"
            join = " AND ".join(
                f"{target_alias}.{_q(target_column)} = {alias}.{_q(column)}"
                for column, target_column in zip(relation.columns, relation.target_columns,
                                                 strict=True))
            hops.append((_q(target.name), target_alias, join))
            table, alias = target, target_alias
        last = path.names[-1]
        column = table.column(last.text)
        if column is None:
            if self.planner.artifact.relation(table.alias, last.text) is not None:
                raise QueryError(f"'{last.text}' on table '{table.alias}' is a relation: compare "
                                 f"one of its fields, e.g. {path.dotted}.<field>",
                                 at=last.at)
            raise self.planner.unknown("field", last, table)

        def wrap(predicate: str) -> str:
            # "Any" semantics: a predicate through to-many relations holds when
            # at least one chain of related rows satisfies it. One EXISTS over
            # the joined hops (not one EXISTS per hop: SQLite's parser stack,
            # about 100 entries, holds ~9 per nested subquery).
            if not hops:
                return predicate
            (first_name, first_alias, correlation), *rest = hops
            joins = "".join(f" JOIN {name} AS {hop_alias} ON {join}"
                            for name, hop_alias, join in rest)
            return (f"EXISTS (SELECT 1 FROM {first_name} AS {first_alias}{joins} "
                    f"WHERE {correlation} AND {predicate})")

        return f"{alias}.{_q(column.name)}", column, wrap


class _Planner:
    def __init__(self, artifact: SchemaArtifact, slots: LiteralSlots | None = None):
        self.artifact = artifact
        self.slots = slots

    def plan(self, query: Query) -> Plan:
        selection = query.root
        table = self.artifact.table(selection.name.text)
        if table is None:
            raise UnknownNameError("table", selection.name.text, table=None,
                                   available=[t.alias for t in self.artifact.tables],
                                   at=selection.at)
        root = self._node(table, selection, link=(), many=True)
        limit, offset = self._count(selection, "limit"), self._count(selection, "offset")
        json_sql, json_params = None, ()
        if root.json is not None and usable(root.json):
            json_sql, json_params = statement(root.json)
        return Plan(root=root, limit=limit, offset=0 if offset is None else offset,
                    json_sql=json_sql, json_params=json_params)

    def _count(self, selection: Selection, role: str) -> int | Slot | None:
        """A selection's LIMIT or OFFSET (None if it gave none): its value, or a slot."""
        value = getattr(selection, role)
        if value is None or self.slots is None:
            return value
        return self.slots.count(getattr(selection, f"{role}_at"), value, role)

    # -- names ---------------------------------------------------------------

    def unknown(self, kind: str, name, table: Table) -> UnknownNameError:
        if kind == "relation":
            available = [r.name for r in self.artifact.relations_of(table.alias)]
        elif kind == "field":
            available = _visible_fields(table)
        else:
            available = _visible_fields(table) + [
                r.name for r in self.artifact.relations_of(table.alias)]
        return UnknownNameError(kind, name.text, table=table.alias, available=available,
                                at=name.at)

    def target_of(self, relation: Relation, at: Location) -> Table:
        target = self.artifact.table(relation.target)
        if target is None:
            raise QueryError(f"the schema is inconsistent: relation '{relation.name}' leads to "
                             f"unknown table '{relation.target}'", at=at)
        return target

    def _entries(self, table: Table, selection: Selection) -> dict:
        """Output name -> Column or (Relation, Selection), in selection order."""
        entries: dict = {}
        for entry in selection.entries:
            if isinstance(entry, Wildcard):
                # Wildcards never replace what is already there; explicit
                # entries after them replace in place (dicts keep key order).
                for column in table.columns:
                    if not column.hidden:
                        entries.setdefault(column.field, column)
                if entry.with_relations:
                    for relation in self.artifact.relations_of(table.alias):
                        entries.setdefault(relation.name, (relation, Selection(
                            name=Name(relation.name, entry.at), filter=None, entries=_STAR)))
            elif isinstance(entry, FieldEntry):
                column = table.column(entry.name.text)
                if column is None:
                    if self.artifact.relation(table.alias, entry.name.text) is not None:
                        raise QueryError(
                            f"'{entry.name.text}' on table '{table.alias}' is a relation: give "
                            f"it a selection, e.g. {entry.name.text} {{ * }}",
                            at=entry.name.at)
                    raise self.unknown("field or relation", entry.name, table)
                entries[column.field] = column
            else:
                relation = self.artifact.relation(table.alias, entry.name.text)
                if relation is None:
                    if table.column(entry.name.text) is not None:
                        raise QueryError(
                            f"'{entry.name.text}' on table '{table.alias}' is a field, not a "
                            "relation: it takes no braces", at=entry.name.at)
                    raise self.unknown("relation", entry.name, table)
                entries[relation.name] = (relation, entry)
        return entries

    # -- nodes -------------------------------------------------------------

    def _node(self, table: Table, selection: Selection, *, link: tuple[str, ...],
              many: bool) -> NodePlan:
        if not many and (selection.order_by or selection.limit is not None
                         or selection.offset is not None):
            at = (selection.order_by[0].name.at if selection.order_by
                  else selection.limit_at or selection.offset_at)
            raise QueryError(f"'{selection.name.text}' is a single object: ORDER BY, LIMIT and "
                             "OFFSET apply only to lists", at=at)

        fetched: list[str] = []

        def position_of(column_name: str) -> int:
            if column_name not in fetched:
                fetched.append(column_name)
            return fetched.index(column_name)

        link_positions = tuple(position_of(name) for name in link)
        outputs, children, sizes = [], [], []
        json_entries, json_ok = [], True
        fixed_size = 0
        for key, entry in self._entries(table, selection).items():
            json_key = encoded_key(key)
            json_ok = json_ok and json_key is not None
            if isinstance(entry, Column):
                outputs.append(ColumnOutput(key=key, index=position_of(entry.name),
                                            convert=_CONVERTERS.get(entry.type)))
                json_ok = json_ok and safe_type(entry.type)
                json_entries.append(JsonColumn(key=json_key, column=_q(entry.name),
                                               kind=entry.type))
                size = _size_sql(f"t0.{_q(entry.name)}", entry.type)
                if size is None:
                    fixed_size += _BOOLEAN_SIZE
                else:
                    sizes.append(size)
                continue
            relation, child_selection = entry
            target = self.target_of(relation, child_selection.at)
            child = self._node(target, child_selection, link=relation.target_columns,
                               many=relation.many)
            binary = tuple(_source_column(target, name).type == "binary"
                           for name in relation.target_columns)
            children.append(ChildPlan(
                many=relation.many, binary_key=binary, node=child,
                parent_key=tuple(position_of(name) for name in relation.columns)))
            outputs.append(RelationOutput(key=key, child=len(children) - 1))
            # Keys of one logical type have one SQLite affinity on both sides,
            # so `=` matches what the Python path's key lookup does.
            json_ok = (json_ok and child.json is not None and not any(binary) and all(
                _source_column(table, name).type == _source_column(target, target_name).type
                for name, target_name in zip(relation.columns, relation.target_columns,
                                             strict=True)))
            json_entries.append(JsonRelation(
                key=json_key, many=relation.many, node=child.json,
                pairs=tuple((_q(name), _q(target_name)) for name, target_name
                            in zip(relation.columns, relation.target_columns, strict=True))))

        size_index = len(fetched)
        size_sql = group_operands(sizes, " + ") if sizes else "0"
        where, where_params = None, ()
        if selection.filter is not None:
            where, filter_params = _SnapshotFilter(self, table, ALIAS).compile(selection.filter)
            where_params = tuple(filter_params)
        order = self._order(table, selection, ALIAS)
        # A child list's own LIMIT and OFFSET (slots are claimed once: both statements share them).
        limit = self._count(selection, "limit") if link else None
        offset = self._count(selection, "offset") if link else None
        sql, params = self._statement(table, selection, fetched, size_sql, link, many,
                                      where, where_params, order, limit, offset)
        json_node = JsonNode(
            table=_q(table.name), where=where, where_params=where_params, order=order,
            entries=tuple(json_entries), usable=json_ok and bool(order),
            limit=limit, offset=offset)
        return NodePlan(table=table.alias, sql=sql, params=params, link=link_positions,
                        outputs=tuple(outputs), children=tuple(children),
                        size_index=size_index, fixed_size=fixed_size + _fixed_size(outputs),
                        json=json_node)

    def _statement(self, table: Table, selection: Selection, fetched: list[str], size_sql: str,
                   link: tuple[str, ...], many: bool, filter_sql: str | None,
                   filter_params: tuple, order: str, limit, offset) -> tuple[str, tuple]:
        alias = "t0"
        conditions, params = [], []
        if link:
            conditions.append(self._key_match(table, link, alias))
        if filter_sql is not None:
            conditions.append(filter_sql.replace(ALIAS, alias))
            params.extend(filter_params)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        source = f"FROM {_q(table.name)} AS {alias}{where}"
        order = order.replace(ALIAS, alias)
        order_by = f" ORDER BY {order}" if order else ""
        columns = [f"{alias}.{_q(name)}" for name in fetched] + [size_sql]

        if not link:  # the root: LIMIT and OFFSET are bound at run time
            return f"SELECT {', '.join(columns)} {source}{order_by} LIMIT ? OFFSET ?", tuple(params)
        # A written OFFSET pages even when it is 0, so that a plan for the
        # query's shape has the same statement whatever the value.
        if not (many and (selection.limit is not None or selection.offset is not None)):
            return f"SELECT {', '.join(columns)} {source}{order_by}", tuple(params)

        # Paging per parent: number each parent's children in order, keep a window.
        partition = ", ".join(f"{alias}.{_q(name)}" for name in link)
        window = f"PARTITION BY {partition}" + order_by
        inner = ", ".join(f"{column} AS c{i}" for i, column in enumerate(columns))
        outer = ", ".join(f"c{i}" for i in range(len(columns)))
        bounds = ' WHERE "__rn" > ?'
        params.append(0 if offset is None else offset)
        if limit is not None:
            bounds += ' AND "__rn" <= ?'
            params.append(limit if offset is None else _page_end(offset, limit))
        sql = (f'SELECT {outer} FROM (SELECT {inner}, ROW_NUMBER() OVER ({window}) AS "__rn" '
               f'{source}){bounds} ORDER BY "__rn"')
        return sql, tuple(params)

    def _key_match(self, table: Table, link: tuple[str, ...], alias: str) -> str:
        # The parent keys arrive as one JSON array parameter, so a nested
        # selection costs one statement whatever the number of parent rows.
        expressions = []
        for name in link:
            expression = f"{alias}.{_q(name)}"
            if _source_column(table, name).type == "binary":
                expression = f"hex({expression})"
            expressions.append(expression)
        if len(expressions) == 1:
            return f"{expressions[0]} IN (SELECT value FROM json_each(?))"
        extracts = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(expressions)))
        return f"({', '.join(expressions)}) IN (SELECT {extracts} FROM json_each(?))"

    def _order(self, table: Table, selection: Selection, alias: str) -> str:
        parts, ordered = [], set()
        for key in selection.order_by:
            column = table.column(key.name.text)
            if column is None:
                if self.artifact.relation(table.alias, key.name.text) is not None:
                    raise QueryError(f"'{key.name.text}' on table '{table.alias}' is a relation: "
                                     "ORDER BY takes fields only", at=key.name.at)
                raise self.unknown("field", key.name, table)
            part = f"{alias}.{_q(column.name)} {'DESC' if key.descending else 'ASC'}"
            if key.nulls:
                part += f" NULLS {key.nulls.upper()}"
            parts.append(part)
            ordered.add(column.name)
        # Break ties by primary key (rowid without one) so results and pages are stable.
        if table.primary_key:
            tiebreak = [f"{alias}.{_q(name)}" for name in table.primary_key
                        if name not in ordered]
        else:
            rowid = _rowid_name(table)
            tiebreak = [f"{alias}.{rowid}"] if rowid else []
        return ", ".join(parts + tiebreak)


def _page_end(offset: int | Slot, limit: int | Slot) -> int | Slot:
    if isinstance(offset, Slot):
        return Slot(offset.index, plus=limit.index)
    return offset + limit


__all__ = ["LiteralSlots", "Slot", "Plan", "NodePlan", "ChildPlan", "ColumnOutput", "RelationOutput",
           "compile_query", "plan_query"]
