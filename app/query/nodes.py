"""The parsed form of a query: immutable, hashable dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Location:
    """Where a node starts in the query text."""

    position: int  # 0-based offset
    line: int      # 1-based
    column: int    # 1-based


@dataclass(frozen=True)
class Name:
    text: str
    at: Location


# -- filter expressions -----------------------------------------------------

@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool
    at: Location


@dataclass(frozen=True)
class Path:
    """A field, optionally reached through relations: `posts.comments.approved`."""

    names: tuple[Name, ...]

    @property
    def at(self) -> Location:
        return self.names[0].at

    @property
    def dotted(self) -> str:
        return ".".join(name.text for name in self.names)


@dataclass(frozen=True)
class Comparison:
    path: Path
    operator: str  # one of = != < <= > >=
    value: Literal


@dataclass(frozen=True)
class Like:
    path: Path
    pattern: Literal
    negated: bool = False
    ignore_case: bool = False  # ILIKE


@dataclass(frozen=True)
class InList:
    path: Path
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    path: Path
    negated: bool = False  # IS NOT NULL


@dataclass(frozen=True)
class Between:
    path: Path
    low: Literal
    high: Literal
    negated: bool = False


@dataclass(frozen=True)
class And:
    operands: tuple["Expression", ...]


@dataclass(frozen=True)
class Or:
    operands: tuple["Expression", ...]


@dataclass(frozen=True)
class Not:
    operand: "Expression"


Predicate = Union[Comparison, Like, InList, IsNull, Between]
Expression = Union[Predicate, And, Or, Not]


# -- selections -------------------------------------------------------------

@dataclass(frozen=True)
class FieldEntry:
    """A bare name in a selection: a scalar field."""

    name: Name


@dataclass(frozen=True)
class Wildcard:
    """`*` (every scalar field) or `...` (scalars plus one level of relations)."""

    at: Location
    with_relations: bool


@dataclass(frozen=True)
class OrderKey:
    name: Name
    descending: bool = False
    nulls: str | None = None  # "first" | "last" | None (SQLite's default)


@dataclass(frozen=True)
class Selection:
    """`name(filter) { entries ORDER BY ... LIMIT n OFFSET m }`."""

    name: Name
    filter: Expression | None
    entries: tuple[Union[FieldEntry, Wildcard, "Selection"], ...]
    order_by: tuple[OrderKey, ...] = ()
    limit: int | None = None
    limit_at: Location | None = None
    offset: int | None = None
    offset_at: Location | None = None

    @property
    def at(self) -> Location:
        return self.name.at


@dataclass(frozen=True)
class Query:
    root: Selection


__all__ = ["Location", "Name", "Literal", "Path", "Comparison", "Like", "InList",
           "IsNull", "Between", "And", "Or", "Not", "Predicate", "Expression",
           "FieldEntry", "Wildcard", "OrderKey", "Selection", "Query"]
