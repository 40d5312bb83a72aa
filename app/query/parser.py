"""Text -> parsed query (`nodes`), with syntax errors that say where and what."""

from __future__ import annotations

import math

from lark import Token, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from .errors import QueryError, QuerySyntaxError
from .grammar import lark_parser
from .nodes import (
    And,
    Between,
    Comparison,
    Expression,
    FieldEntry,
    InList,
    IsNull,
    Like,
    Literal,
    Location,
    Name,
    Not,
    Or,
    OrderKey,
    Path,
    Query,
    Selection,
    Wildcard,
)

# Bounds that keep every number bindable as an SQLite/MySQL/PostgreSQL bigint.
_MAX_INTEGER = 2**63 - 1
_MIN_INTEGER = -(2**63)
# Longest query text accepted; a bound like every other input of the service.
MAX_QUERY_LENGTH = 100_000

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r",
            "b": "\b", "f": "\f"}

# How each terminal is named in "expected ..." messages, in the order listed.
# NAME is described by context; NULL_VALUE is left out on purpose (a bare
# null is never valid, IS NULL is the way).
_EXPECTED_WORDING = (
    ("NAME", None), ("STAR", "'*'"), ("ELLIPSIS", "'...'"), ("_LPAR", "'('"),
    ("_LBRACE", "'{'"), ("OP", "a comparison operator"), ("_DOT", "'.'"),
    ("NOT", "NOT"), ("_IN", "IN"), ("LIKE", "LIKE"), ("ILIKE", "ILIKE"), ("_IS", "IS"),
    ("_BETWEEN", "BETWEEN"), ("_NULL", "NULL"), ("STRING", "a string"),
    ("NUMBER", "a number"), ("TRUE", "true"), ("FALSE", "false"), ("_AND", "AND"),
    ("_OR", "OR"), ("ASC", "ASC"), ("DESC", "DESC"), ("NULLS", "NULLS"),
    ("FIRST", "FIRST"), ("LAST", "LAST"), ("_COMMA", "','"), ("_RPAR", "')'"),
    ("ORDER_BY", "ORDER BY"), ("LIMIT", "LIMIT"), ("OFFSET", "OFFSET"),
    ("_RBRACE", "'}'"), ("$END", "the end of the query"),
)


def parse(text: str) -> Query:
    """Parse a whole query (`table(filter) { ... }`)."""
    tree = _parse_tree(text, "query")
    return Query(root=_selection(tree.children[0]))


def parse_filter(text: str) -> Expression:
    """Parse a bare filter expression, as written between a selection's parentheses."""
    tree = _parse_tree(text, "filter_only")
    return _expression(tree.children[0])


def line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a 0-based offset in `text`."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


# -- lark -> nodes ----------------------------------------------------------

def _parse_tree(text: str, start: str) -> Tree:
    if not isinstance(text, str):
        raise QueryError("the query must be text")
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    if not text.strip():
        raise QuerySyntaxError("the query is empty", position=0, line=1, column=1)
    try:
        return lark_parser().parse(text, start=start)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None


def _location(token: Token) -> Location:
    return Location(position=token.start_pos, line=token.line, column=token.column)


def _name(token: Token) -> Name:
    text = str(token)
    if text.startswith("`"):
        text = text[1:-1].replace("``", "`")
    return Name(text=text, at=_location(token))


def _selection(tree: Tree) -> Selection:
    name_token, *rest = tree.children
    body = rest[-1]
    filter_expression = _expression(rest[0].children[0]) if len(rest) == 2 else None
    entries, order_by = [], ()
    limit = limit_at = offset = offset_at = None
    for child in body.children:
        if isinstance(child, Token):  # STAR or ELLIPSIS
            entries.append(Wildcard(at=_location(child), with_relations=child.type == "ELLIPSIS"))
        elif child.data == "field":
            entries.append(FieldEntry(name=_name(child.children[0])))
        elif child.data == "selection":
            entries.append(_selection(child))
        elif child.data == "order_by":
            order_by = tuple(_order_key(key) for key in child.children[1:])
        elif child.data == "limit":
            limit, limit_at = _count(child), _location(child.children[0])
        elif child.data == "offset":
            offset, offset_at = _count(child), _location(child.children[0])
    return Selection(name=_name(name_token), filter=filter_expression, entries=tuple(entries),
                     order_by=order_by, limit=limit, limit_at=limit_at, offset=offset,
                     offset_at=offset_at)


def _order_key(tree: Tree) -> OrderKey:
    name_token, direction, nulls, first_or_last = tree.children
    return OrderKey(name=_name(name_token),
                    descending=direction is not None and direction.type == "DESC",
                    nulls=None if nulls is None else first_or_last.type.lower())


def _count(tree: Tree) -> int:
    keyword, number = tree.children
    text = str(number)
    if not text.isdigit() or int(text) > _MAX_INTEGER:
        raise _error_at(number, f"{keyword.upper()} needs a whole number from 0 to "
                                f"{_MAX_INTEGER}, not {text}")
    return int(text)


def _expression(tree: Tree) -> Expression:
    kind = tree.data
    children = tree.children
    if kind in ("disjunction", "conjunction"):
        operands = tuple(_expression(child) for child in children)
        if len(operands) == 1:
            return operands[0]
        return Or(operands) if kind == "disjunction" else And(operands)
    if kind == "negation":
        return Not(_expression(children[1]))
    path = _path(children[0])
    if kind == "comparison":
        operator = "!=" if children[1] == "<>" else str(children[1])
        return Comparison(path=path, operator=operator, value=_literal(children[2]))
    negated = children[1] is not None
    if kind == "like":
        pattern = _literal(children[3])
        if not isinstance(pattern.value, str):
            raise _error_at(children[3], f"{children[2].upper()} needs a string pattern")
        return Like(path=path, pattern=pattern, negated=negated,
                    ignore_case=children[2].type == "ILIKE")
    if kind == "in_list":
        values = tuple(_literal(value) for value in children[2:] if value is not None)
        if not values:
            at = path.at
            raise QueryError(f"IN needs at least one value for '{path.dotted}'",
                             position=at.position, line=at.line, column=at.column)
        return InList(path=path, values=values, negated=negated)
    if kind == "is_null":
        return IsNull(path=path, negated=negated)
    if kind == "between":
        return Between(path=path, low=_literal(children[2]), high=_literal(children[3]),
                       negated=negated)
    raise AssertionError(f"unhandled rule {kind}")  # the grammar and this switch disagree


def _path(tree: Tree) -> Path:
    return Path(names=tuple(_name(token) for token in tree.children))


def _literal(token: Token) -> Literal:
    at = _location(token)
    if token.type == "STRING":
        return Literal(value=_unescape(token), at=at)
    if token.type == "TRUE":
        return Literal(value=True, at=at)
    if token.type == "FALSE":
        return Literal(value=False, at=at)
    if token.type == "NULL_VALUE":
        raise _error_at(token, "null cannot be compared with =, IN or BETWEEN; "
                               "use IS NULL or IS NOT NULL")
    return Literal(value=_number(token), at=at)


def _number(token: Token) -> int | float:
    text = str(token)
    if any(mark in text for mark in ".eE"):
        value = float(text)
        if math.isinf(value):
            raise _error_at(token, f"the number {text} is out of range")
        return value
    value = int(text)
    if not _MIN_INTEGER <= value <= _MAX_INTEGER:
        raise _error_at(token, f"the number {text} is out of range")
    return value


def _unescape(token: Token) -> str:
    """Decode a double-quoted string: JSON-style escapes; any other `\\c` stays as typed.

    Keeping unknown escapes lets LIKE patterns say `"100\\%"` for a literal %.
    """
    body = str(token)[1:-1]
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        follower = body[i + 1]  # the STRING regex guarantees one
        if follower in _ESCAPES:
            out.append(_ESCAPES[follower])
            i += 2
        elif follower == "u":
            digits = body[i + 2:i + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise QuerySyntaxError(
                    "\\u needs four hexadecimal digits",
                    **_where_offset(token, 1 + i))
            out.append(chr(int(digits, 16)))
            i += 6
        else:
            out.append(char + follower)
            i += 2
    return "".join(out)


# -- errors -----------------------------------------------------------------

def _where(token: Token) -> dict:
    return {"position": token.start_pos, "line": token.line, "column": token.column}


def _where_offset(token: Token, offset: int) -> dict:
    """Location of the character `offset` characters into `token` (strings may span lines)."""
    line, column = line_column(str(token), offset)
    return {"position": token.start_pos + offset, "line": token.line + line - 1,
            "column": token.column + column - 1 if line == 1 else column}


def _error_at(token: Token, reason: str) -> QueryError:
    return QueryError(reason, **_where(token))


def _syntax_error(text: str, exc: UnexpectedInput) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        position = exc.token.start_pos
        found = _quote(str(exc.token))
        expected = _acceptable(exc)
    elif isinstance(exc, UnexpectedCharacters):
        position = exc.pos_in_stream
        found = _quote(text[position])
        expected = exc.allowed
        if text[position] == '"':
            line, column = line_column(text, position)
            return QuerySyntaxError("unterminated string (a closing '\"' is missing)",
                                    position=position, line=line, column=column)
        if text[position] == "`":
            line, column = line_column(text, position)
            return QuerySyntaxError("unterminated quoted name (a closing '`' is missing)",
                                    position=position, line=line, column=column)
    elif isinstance(exc, (UnexpectedToken, UnexpectedEOF)):
        position = len(text)
        found = "the end of the query"
        expected = _acceptable(exc) if isinstance(exc, UnexpectedToken) else ()
    else:  # pragma: no cover - lark has no other UnexpectedInput today
        position, found, expected = 0, "something unexpected", ()
    line, column = line_column(text, position)
    wording = _describe_expected(text, position, set(expected))
    reason = f"expected {wording} but found {found}" if wording else f"unexpected {found}"
    return QuerySyntaxError(reason, position=position, line=line, column=column)


def _acceptable(exc: UnexpectedToken) -> set[str]:
    """The terminals truly acceptable where parsing stopped.

    LALR merges look-ahead sets (after a value, ',' is listed even outside
    IN (...)); the interactive parser replays each candidate to be exact.
    """
    if exc.interactive_parser is not None:
        try:
            return set(exc.interactive_parser.accepts())
        except Exception:  # pragma: no cover - fall back to lark's own set
            pass
    return set(exc.expected)


def _describe_expected(text: str, position: int, expected: set[str]) -> str:
    words = []
    for terminal, wording in _EXPECTED_WORDING:
        if terminal not in expected:
            continue
        if terminal == "NAME":
            before = text[:position].rstrip()
            if not before:
                wording = "a table name"
            elif before.endswith("."):
                wording = "a field or relation name"
            else:
                wording = "a field name"
        if wording:
            words.append(wording)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _quote(fragment: str) -> str:
    if len(fragment) > 30:
        fragment = fragment[:27] + "..."
    return "'" + fragment + "'"


__all__ = ["parse", "parse_filter", "line_column", "MAX_QUERY_LENGTH"]
