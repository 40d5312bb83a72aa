"""Query shapes: one plan for every text that differs only in its literal values.

A query's shape is its text with each literal value (a string or a number in
a filter, a LIMIT or OFFSET number) cut out and its kind left in its place;
`shape_of` finds them in one regular-expression pass, far cheaper than
parsing. The first text of a shape is parsed and planned with a `Slot` for
each literal (`compile_shape`); later texts of that shape only have their
values converted and checked (`ShapePlan.bind`), with the same rules as the
parser's, and bound as SQLite parameters when the plan runs.

Everything the shape keeps decides the plan's structure: names, keywords,
operators, `true`/`false`, how many values an IN list holds, whether LIMIT
or OFFSET is written. A value the parser would refuse (a number out of range,
a LIMIT over maxLimit, a bad escape) makes `bind` give up, and the text takes
the exact-text path, whose full parse raises the error with its line and
column. So does a text whose literals the parse does not find exactly where
`shape_of` did (then nothing of that shape is shaped).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from app.contracts.artifact import SchemaArtifact
from app.contracts.query_limits import QueryLimits

from .nodes import Literal, Location
from .parser import count_value, number_value, parse, string_value
from .planner import Plan, Slot, plan_query

# Strings and quoted names are skipped whole (the grammar's STRING and NAME);
# a number (the grammar's NUMBER) counts only where no name or number could
# have begun before it, so digits inside names are never literals. A quote
# left open means the text is not a query: the full parse says so. The
# lookahead, which every alternative would pass, skips other characters 3x
# faster than trying each alternative.
_LITERALS = re.compile(
    r'(?=["`\d+\-])(?:("(?:[^"\\]|\\.)*")|`(?:[^`]|``)+`'
    r"|(?<![\w+\-.])([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r'|(["`]))', re.S)

# Literal kinds, as they stand in a shape (every other part is a str).
STRING, NUMBER = 0, 1

# A literal's role, found by planning: what its text is converted to.
_VALUE, _LIMIT, _OFFSET = "value", "limit", "offset"

# Text between LIMIT or OFFSET and its number.
_COUNT_KEYWORD = re.compile(r"(?i)(?:limit|offset)\s*")


def shape_of(text: str) -> tuple[tuple, list[str]] | None:
    """`(shape, literal texts)` of a query text, or None when it has no shape (a quote left open)."""
    parts: list = []
    raws: list[str] = []
    start = 0
    for match in _LITERALS.finditer(text):
        string, number, open_quote = match.group(1, 2, 3)
        if open_quote is not None:
            return None
        if string is None and number is None:
            continue  # a quoted name
        parts.append(text[start:match.start()])
        parts.append(STRING if string is not None else NUMBER)
        raws.append(string if string is not None else number)
        start = match.end()
    parts.append(text[start:])
    return tuple(parts), raws


@dataclass(frozen=True)
class ShapePlan:
    """The plan of a query shape, and how each of its literal texts becomes a value."""

    plan: Plan
    roles: tuple[str, ...]  # per literal: _VALUE, _LIMIT or _OFFSET
    kinds: tuple[int, ...]  # per literal: STRING or NUMBER

    def bind(self, raws: list[str], limits: QueryLimits) -> tuple | None:
        """The values of one text's literals; None if the parser would refuse one."""
        values = []
        for role, kind, raw in zip(self.roles, self.kinds, raws, strict=True):
            if role is _VALUE:
                value = string_value(raw) if kind == STRING else number_value(raw)
            else:
                value = count_value(raw, limits.max_limit if role is _LIMIT
                                    else limits.max_offset)
            if value is None:
                return None
            values.append(value)
        return tuple(values)


class _Unshapeable(Exception):
    """The parse found literals other than `shape_of` did: plan by text."""


class _Slots:
    """Gives each literal of one text its slot while the text is planned (planner.LiteralSlots)."""

    def __init__(self, text: str):
        self.text = text
        self.positions: list[int] = []
        self.kinds: list[int] = []
        self.raws: list[str] = []
        for match in _LITERALS.finditer(text):
            string, number = match.group(1, 2)
            if string is not None or number is not None:
                self.positions.append(match.start())
                self.kinds.append(STRING if string is not None else NUMBER)
                self.raws.append(string if string is not None else number)
        self.index = {position: i for i, position in enumerate(self.positions)}
        self.roles: list[str | None] = [None] * len(self.positions)

    def value(self, literal: Literal, convert: Callable | None) -> object:
        if isinstance(literal.value, bool):  # `true` and `false` are part of the shape
            return literal.value if convert is None else convert(literal.value)
        i = self._claim(self.index.get(literal.at.position), _VALUE)
        raw = self.raws[i]
        value = string_value(raw) if self.kinds[i] == STRING else number_value(raw)
        if value != literal.value or type(value) is not type(literal.value):
            raise _Unshapeable
        return Slot(i, convert)

    def count(self, keyword_at: Location, value: int, role: str) -> Slot:
        i = bisect.bisect_right(self.positions, keyword_at.position)
        if i == len(self.positions) or self.kinds[i] != NUMBER or not _COUNT_KEYWORD.fullmatch(
                self.text, keyword_at.position, self.positions[i]):
            raise _Unshapeable
        self._claim(i, role)
        if count_value(self.raws[i], value) != value:
            raise _Unshapeable
        return Slot(i)

    def _claim(self, i: int | None, role: str) -> int:
        if i is None or self.roles[i] is not None:
            raise _Unshapeable
        self.roles[i] = role
        return i

    def complete(self) -> bool:
        return None not in self.roles


def compile_shape(artifact: SchemaArtifact, text: str, limits: QueryLimits) -> ShapePlan | None:
    """Parse and plan `text` for its shape; None if its shape cannot be planned.

    Raises the text's QueryError, exactly as the full path does.
    """
    query = parse(text, limits)
    slots = _Slots(text)
    try:
        plan = plan_query(artifact, query, slots)
    except _Unshapeable:
        return None
    if not slots.complete():
        return None
    return ShapePlan(plan=plan, roles=tuple(slots.roles), kinds=tuple(slots.kinds))


class ShapeCache:
    """Plans by query shape, the least recently used dropped past `size`; thread-safe.

    A shape that cannot be planned is remembered too (as None), so that its
    texts go to the exact-text path without being parsed twice.
    """

    def __init__(self, artifact: SchemaArtifact, limits: QueryLimits, size: int):
        self.artifact = artifact
        self.limits = limits
        self.size = size
        self.hits = self.misses = 0
        self._plans: OrderedDict[tuple, ShapePlan | None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._plans)

    def plan(self, shape: tuple, text: str) -> ShapePlan | None:
        """The plan of `shape`, compiled from `text` (one of its texts) on a miss."""
        with self._lock:
            try:
                found = self._plans[shape]
            except KeyError:
                self.misses += 1
            else:
                self.hits += 1
                self._plans.move_to_end(shape)
                return found
        # Outside the lock: parsing and planning take a while, and two
        # threads compiling one shape at once both get a correct plan.
        compiled = compile_shape(self.artifact, text, self.limits)
        with self._lock:
            self._plans[shape] = compiled
            self._plans.move_to_end(shape)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return compiled


__all__ = ["NUMBER", "STRING", "ShapeCache", "ShapePlan", "compile_shape", "shape_of"]
