"""Filter expressions -> SQL for SQLite (the snapshot), MySQL and PostgreSQL (the sources)."""

from __future__ import annotations

from collections.abc import Callable

from app.contracts.artifact import Column, Table
from app.contracts.sql import DIALECTS, quote_identifier

from .errors import QueryError, UnknownNameError
from .nodes import (
    And,
    Between,
    Comparison,
    Expression,
    InList,
    IsNull,
    Like,
    Literal,
    Not,
    Or,
    Path,
)

_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (`%`, `_`, `\\` escapes the next character) as an SQLite GLOB pattern.

    GLOB is case-sensitive whatever `PRAGMA case_sensitive_like` says, which
    is what LIKE means in this language.
    """
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(_glob_literal(pattern[i]))
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            out.append(_glob_literal(char))
        i += 1
    return "".join(out)


def _glob_literal(char: str) -> str:
    # GLOB's own metacharacters match themselves only inside a bracket class.
    return f"[{char}]" if char in "*?[" else char


# A resolved path: the column's SQL, the Column, and a function wrapping a
# predicate on it (identity for plain columns, EXISTS for relation paths).
Resolved = tuple[str, Column, Callable[[str], str]]


class FilterCompiler:
    """Compiles an `Expression` to `(sql, params)`; subclasses say how paths resolve."""

    def __init__(self, dialect: str):
        if dialect not in DIALECTS:
            raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
        self.dialect = dialect
        self.placeholder = "?" if dialect == "sqlite" else "%s"

    def compile(self, expression: Expression) -> tuple[str, list]:
        params: list = []
        return self._expression(expression, params), params

    def resolve(self, path: Path) -> Resolved:
        raise NotImplementedError

    def quote(self, name: str) -> str:
        return quote_identifier(name, self.dialect)

    # -- expressions ---------------------------------------------------------

    def _expression(self, node: Expression, params: list) -> str:
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            operands = node.operands
            if self.dialect == "sqlite":
                # The most nested operand first: SQLite's parser (a stack of
                # about 100 entries) descends into a first operand holding one
                # entry, into a later one holding three. The order changes no
                # result; parameters follow it.
                operands = sorted(operands, key=_nesting, reverse=True)
            return group_operands([self._expression(op, params) for op in operands], joiner)
        if isinstance(node, Not) and isinstance(node.operand, Not):
            return self._expression(node.operand.operand, params)  # NOT NOT x is x, NULL too
        if isinstance(node, Not):
            operand = self._expression(node.operand, params)
            # A predicate is parenthesised, since NOT's precedence against
            # BETWEEN/IN/LIKE differs between engines and modes; groups and
            # NOTs already are (one pair per level keeps SQLite's parser stack,
            # about 100 deep, out of reach of the nesting limit).
            if not isinstance(node.operand, (And, Or, Not)):
                operand = f"({operand})"
            return f"(NOT {operand})"
        column_sql, column, wrap = self.resolve(node.path)
        return wrap(self._predicate(node, column_sql, column, params))

    def _predicate(self, node, column: str, source: Column, params: list) -> str:
        mark = self.placeholder
        if isinstance(node, Comparison):
            params.append(self._value(node.value))
            return f"{column} {_OPERATORS[node.operator]} {mark}"
        if isinstance(node, IsNull):
            return f"{column} IS {'NOT ' if node.negated else ''}NULL"
        if isinstance(node, InList):
            params.extend(self._value(value) for value in node.values)
            marks = ", ".join(mark for _ in node.values)
            return f"{column} {'NOT ' if node.negated else ''}IN ({marks})"
        if isinstance(node, Between):
            params.extend((self._value(node.low), self._value(node.high)))
            return f"{column} {'NOT ' if node.negated else ''}BETWEEN {mark} AND {mark}"
        if isinstance(node, Like):
            sql = self._like(node, column, source, params)
            return f"(NOT {sql})" if node.negated else sql
        raise AssertionError(f"unhandled filter node {node!r}")  # nodes and compiler disagree

    def _like(self, node: Like, column: str, source: Column, params: list) -> str:
        mark = self.placeholder
        if self.dialect == "sqlite":
            if node.ignore_case:
                # lower() on both sides keeps ILIKE case-insensitive even on a
                # connection where PRAGMA case_sensitive_like is on (ASCII only,
                # as SQLite's lower() is).
                params.append(self._value(node.pattern))
                return f"lower({column}) LIKE lower({mark}) ESCAPE '\\'"
            params.append(self._value(node.pattern, like_to_glob))
            return f"{column} GLOB {mark}"
        params.append(self._value(node.pattern))
        if self.dialect == "postgres":
            if source.type != "text":
                # PostgreSQL has no LIKE on numbers or dates; SQLite and MySQL
                # compare their text form, so do the same.
                column = f"CAST({column} AS TEXT)"
            return f"{column} {'ILIKE' if node.ignore_case else 'LIKE'} {mark}"
        # MySQL: LIKE follows the column's collation (usually case-insensitive),
        # so compare bytes for LIKE and lower-case both sides for ILIKE.
        if node.ignore_case:
            return f"LOWER({column}) LIKE LOWER({mark})"
        return f"CAST({column} AS BINARY) LIKE CAST({mark} AS BINARY)"

    def _value(self, literal: Literal, convert: Callable[[str], str] | None = None):
        """The parameter for `literal` (`convert` turns a pattern into what the SQL expects)."""
        return literal.value if convert is None else convert(literal.value)


class TableFilterCompiler(FilterCompiler):
    """Resolves plain names on one table, unqualified: for a source's load-time `where`."""

    def __init__(self, table: Table, dialect: str):
        super().__init__(dialect)
        self.table = table

    def resolve(self, path: Path) -> Resolved:
        if len(path.names) > 1:
            raise QueryError(f"'{path.dotted}': a load-time filter can only use this table's "
                             "own columns, not relation paths", at=path.at)
        column = column_by_field_or_name(self.table, path.names[0].text)
        if column is None:
            raise UnknownNameError("field", path.names[0].text, table=self.table.alias,
                                   available=[c.field for c in self.table.columns],
                                   at=path.at)
        return self.quote(column.name), column, _identity


def column_by_field_or_name(table: Table, name: str) -> Column | None:
    """The column whose field name (hidden or not) is `name`, else whose source name is."""
    for column in table.columns:
        if column.field == name:
            return column
    for column in table.columns:
        if column.name == name:
            return column
    return None


def compile_filter(expression: Expression, table: Table, dialect: str) -> tuple[str, list]:
    """A filter over `table`'s columns as `(sql, params)` for `dialect`.

    Names resolve to a field name first (hidden columns included, since a
    load-time filter may need columns that queries cannot see), then to a
    source column name. Column references are unqualified, so the SQL fits
    `SELECT ... FROM <table> WHERE <sql>`. Params use `?` for sqlite and
    `%s` for mysql (PyMySQL) and postgres (psycopg2); the SQL contains no
    other `%`.
    """
    return TableFilterCompiler(table, dialect).compile(expression)


def _identity(sql: str) -> str:
    return sql


def _nesting(node: Expression) -> int:
    """How deeply `node` nests And/Or/Not (bounded by the parser's max_filter_depth)."""
    if isinstance(node, (And, Or)):
        return 1 + max(_nesting(operand) for operand in node.operands)
    if isinstance(node, Not):
        return 1 + _nesting(node.operand)
    return 0


# Operands joined flat per group. SQLite parses `a OR b OR c ...` into a tree
# as deep as the chain and refuses depth 1,000 ("Expression tree is too
# large"): longer chains are grouped, so depth grows with the logarithm. The
# first operand stays outside the groups, so the parser reaches it (the most
# nested one) without going through extra parentheses.
_GROUP_SIZE = 16


def group_operands(parts: list[str], joiner: str) -> str:
    """`(p1 <joiner> p2 ...)`, the operands after the first nested in groups of _GROUP_SIZE."""
    first, rest = parts[0], parts[1:]
    while len(rest) >= _GROUP_SIZE:
        rest = ["(" + joiner.join(rest[i:i + _GROUP_SIZE]) + ")"
                for i in range(0, len(rest), _GROUP_SIZE)]
    return "(" + joiner.join([first, *rest]) + ")"


__all__ = ["DIALECTS", "FilterCompiler", "TableFilterCompiler", "compile_filter",
           "column_by_field_or_name", "group_operands", "like_to_glob", "quote_identifier"]
