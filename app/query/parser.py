"""Text -> parsed query (`nodes`), with syntax errors that say where and what.

Every structural limit (`QueryLimits`: text size, selection and filter depth,
filter terms, path length, LIMIT/OFFSET) is checked here, before anything is
built that could grow with the text: nesting is measured without recursion,
so the recursive steps after it (the transformer, the planner, the SQL
compiler) only ever see bounded depths.
"""

from __future__ import annotations

import math
import re

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from app.contracts.query_limits import DEFAULT_LIMITS, QueryLimits

from .errors import QueryError, QueryLimitError, QuerySyntaxError
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
_MAX_INTEGER_DIGITS = len(str(_MAX_INTEGER))

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r",
            "b": "\b", "f": "\f"}

# Brackets outside strings and quoted names (the same patterns as the grammar's
# STRING and NAME), for the nesting pre-scan.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|`(?:[^`]|``)+`|([{}()])', re.S)

# Rules that open a filter nesting level: a parenthesised group (the filter's
# own parentheses included) and NOT.
_NESTING_RULES = frozenset({"disjunction", "negation"})

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


def parse(text: str, limits: QueryLimits = DEFAULT_LIMITS) -> Query:
    """Parse a whole query (`table(filter) { ... }`) within `limits`."""
    return _transform(_parse_tree(text, "query", limits), limits)


def parse_filter(text: str, limits: QueryLimits = DEFAULT_LIMITS) -> Expression:
    """Parse a bare filter expression, as written between a selection's parentheses."""
    return _transform(_parse_tree(text, "filter_only", limits), limits)


def line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a 0-based offset in `text`."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


# -- text -> lark tree, within the limits -------------------------------------

def _parse_tree(text: str, start: str, limits: QueryLimits) -> Tree:
    if not isinstance(text, str):
        raise QueryError("the query must be text")
    check_size(text, limits)
    if not text.strip():
        raise QuerySyntaxError("the query is empty", position=0, line=1, column=1)
    _check_brackets(text, limits)
    try:
        tree = lark_parser().parse(text, start=start)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    _check_filter_depth(tree, limits)
    return tree


def check_size(text: str, limits: QueryLimits) -> None:
    """Refuse a text over max_query_bytes (413), the first check of every query."""
    maximum = limits.max_query_bytes
    # A UTF-8 character takes 1 to 4 bytes: encode only when it could matter.
    if len(text) * 4 <= maximum:
        return
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > maximum:
        raise QueryLimitError(f"the query is {size} bytes long", limit="max_query_bytes",
                              value=maximum)


def _check_brackets(text: str, limits: QueryLimits) -> None:
    """Refuse deep nesting from the brackets alone, before the parser builds anything.

    Braces are exactly the selection nesting. Parentheses are a lower bound
    of the filter nesting (an IN list adds one pair), so more than
    max_filter_depth + 1 of them is over the limit for sure; NOTs are counted
    on the tree.
    """
    max_braces, max_parens = limits.max_selection_depth, limits.max_filter_depth + 1
    braces = parens = 0
    for match in _BRACKETS.finditer(text):
        bracket = match.group(1)
        if bracket == "{":
            braces += 1
            if braces > max_braces:
                raise QueryLimitError(f"selections nest more than {max_braces} deep",
                                      limit="max_selection_depth", value=max_braces,
                                      at=_location_of(text, match.start()))
        elif bracket == "}":
            braces -= 1
        elif bracket == "(":
            parens += 1
            if parens > max_parens:
                raise _filter_too_deep(limits, _location_of(text, match.start()))
        elif bracket == ")":
            parens -= 1


def _check_filter_depth(tree: Tree, limits: QueryLimits) -> None:
    """Measure every filter's nesting (parentheses and NOT) without recursion."""
    maximum = limits.max_filter_depth
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > maximum:
                raise _filter_too_deep(limits, _first_location(node))
        # Reversed, so nodes are visited (and the first offender found) in text order.
        stack.extend((child, depth) for child in reversed(node.children)
                     if isinstance(child, Tree))


def _filter_too_deep(limits: QueryLimits, at: Location | None) -> QueryLimitError:
    maximum = limits.max_filter_depth
    return QueryLimitError(f"the filter nests more than {maximum} deep (parentheses and NOT)",
                           limit="max_filter_depth", value=maximum, at=at)


def _first_location(node: Tree) -> Location | None:
    while isinstance(node, Tree):
        node = next((child for child in node.children if child is not None), None)
    return _location(node) if isinstance(node, Token) else None


# -- lark tree -> nodes -------------------------------------------------------

def _transform(tree: Tree, limits: QueryLimits):
    try:
        return _ToNodes(limits).transform(tree)
    except VisitError as exc:
        raise exc.orig_exc from None


@v_args(inline=True)
class _ToNodes(Transformer):
    """Builds `nodes` from the lark tree, each rule's children named by position once."""

    def __init__(self, limits: QueryLimits):
        super().__init__()
        self.limits = limits
        self.terms = 0

    # -- selections --------------------------------------------------------

    def query(self, root: Selection) -> Query:
        return Query(root=root)

    def filter_only(self, expression: Expression) -> Expression:
        return expression

    def selection(self, name: Name, filter_expression: Expression | None, body: dict):
        return Selection(name=name, filter=filter_expression, **body)

    def filter(self, expression: Expression) -> Expression:
        return expression

    def body(self, *children) -> dict:
        *entries, order_by, limit, offset = children
        limit, limit_at = limit or (None, None)
        offset, offset_at = offset or (None, None)
        return {"entries": tuple(entries), "order_by": order_by or (), "limit": limit,
                "limit_at": limit_at, "offset": offset, "offset_at": offset_at}

    def field(self, name: Name) -> FieldEntry:
        return FieldEntry(name=name)

    def order_by(self, _keyword: Token, *keys: OrderKey) -> tuple[OrderKey, ...]:
        return keys

    def order_key(self, name: Name, direction: Token | None, nulls: Token | None,
                  first_or_last: Token | None) -> OrderKey:
        return OrderKey(name=name, descending=direction is not None and direction.type == "DESC",
                        nulls=None if nulls is None else first_or_last.type.lower())

    def limit(self, keyword: Token, number: Token) -> tuple[int, Location]:
        return self._count(keyword, number, "max_limit", self.limits.max_limit)

    def offset(self, keyword: Token, number: Token) -> tuple[int, Location]:
        return self._count(keyword, number, "max_offset", self.limits.max_offset)

    def _count(self, keyword: Token, number: Token, limit: str,
               maximum: int) -> tuple[int, Location]:
        text, word, at = str(number), keyword.upper(), _location(keyword)
        if not text.isdecimal():
            raise QueryError(f"{word} needs a whole number from 0 to {maximum}, not {text}",
                             at=_location(number))
        if len(text.lstrip("0")) > _MAX_INTEGER_DIGITS or int(text) > maximum:
            raise QueryLimitError(f"{word} {_shorten(text)} is more than {maximum}",
                                  limit=limit, value=maximum, at=at)
        return int(text), at

    # -- tokens ------------------------------------------------------------

    def NAME(self, token: Token) -> Name:
        text = str(token)
        if text.startswith("`"):
            text = text[1:-1].replace("``", "`")
        return Name(text=text, at=_location(token))

    def STAR(self, token: Token) -> Wildcard:
        return Wildcard(at=_location(token), with_relations=False)

    def ELLIPSIS(self, token: Token) -> Wildcard:
        return Wildcard(at=_location(token), with_relations=True)

    # -- filters -----------------------------------------------------------

    def disjunction(self, *operands: Expression) -> Expression:
        return operands[0] if len(operands) == 1 else Or(operands)

    def conjunction(self, *operands: Expression) -> Expression:
        return operands[0] if len(operands) == 1 else And(operands)

    def negation(self, _not: Token, operand: Expression) -> Not:
        return Not(operand)

    def path(self, *names: Name) -> Path:
        path = Path(names=names)
        maximum = self.limits.max_path_relations
        if len(names) - 1 > maximum:
            raise QueryLimitError(f"the path '{_shorten(path.dotted)}' follows "
                                  f"{len(names) - 1} relations", limit="max_path_relations",
                                  value=maximum, at=path.at)
        return path

    def comparison(self, path: Path, operator: Token, value: Token) -> Comparison:
        self._count_terms(path, 1)
        return Comparison(path=path, operator="!=" if operator == "<>" else str(operator),
                          value=_literal(value))

    def like(self, path: Path, negated: Token | None, operator: Token, pattern: Token) -> Like:
        self._count_terms(path, 1)
        literal = _literal(pattern)
        if not isinstance(literal.value, str):
            raise QueryError(f"{operator.upper()} needs a string pattern", at=literal.at)
        return Like(path=path, pattern=literal, negated=negated is not None,
                    ignore_case=operator.type == "ILIKE")

    def in_list(self, path: Path, negated: Token | None, *values: Token | None) -> InList:
        literals = tuple(_literal(value) for value in values if value is not None)
        if not literals:
            raise QueryError(f"IN needs at least one value for '{path.dotted}'", at=path.at)
        self._count_terms(path, len(literals))
        return InList(path=path, values=literals, negated=negated is not None)

    def is_null(self, path: Path, negated: Token | None) -> IsNull:
        self._count_terms(path, 1)
        return IsNull(path=path, negated=negated is not None)

    def between(self, path: Path, negated: Token | None, low: Token, high: Token) -> Between:
        self._count_terms(path, 1)
        return Between(path=path, low=_literal(low), high=_literal(high),
                       negated=negated is not None)

    def _count_terms(self, path: Path, terms: int) -> None:
        self.terms += terms
        maximum = self.limits.max_filter_terms
        if self.terms > maximum:
            raise QueryLimitError(f"the filters hold more than {maximum} terms (each "
                                  "predicate and each IN value is one)",
                                  limit="max_filter_terms", value=maximum, at=path.at)


def _location(token: Token) -> Location:
    return Location(position=token.start_pos, line=token.line, column=token.column)


def _location_of(text: str, position: int) -> Location:
    line, column = line_column(text, position)
    return Location(position=position, line=line, column=column)


def _location_in(token: Token, offset: int) -> Location:
    """Location of the character `offset` characters into `token` (strings may span lines)."""
    line, column = line_column(str(token), offset)
    return Location(position=token.start_pos + offset, line=token.line + line - 1,
                    column=token.column + column - 1 if line == 1 else column)


def _literal(token: Token) -> Literal:
    at = _location(token)
    if token.type == "STRING":
        return Literal(value=_unescape(token), at=at)
    if token.type == "TRUE":
        return Literal(value=True, at=at)
    if token.type == "FALSE":
        return Literal(value=False, at=at)
    if token.type == "NULL_VALUE":
        raise QueryError("null cannot be compared with =, IN or BETWEEN; "
                         "use IS NULL or IS NOT NULL", at=at)
    return Literal(value=_number(token), at=at)


def _number(token: Token) -> int | float:
    value = number_value(str(token))
    if value is None:
        raise QueryError(f"the number {_shorten(str(token))} is out of range",
                         at=_location(token))
    return value


def number_value(text: str) -> int | float | None:
    """The value of a NUMBER token's text; None when it is out of range."""
    if any(mark in text for mark in ".eE"):
        value = float(text)
        return None if math.isinf(value) else value
    # Checked by length first: int() refuses texts of more than 4,300 digits.
    if len(text.lstrip("+-").lstrip("0")) > _MAX_INTEGER_DIGITS or not (
            _MIN_INTEGER <= int(text) <= _MAX_INTEGER):
        return None
    return int(text)


def count_value(text: str, maximum: int) -> int | None:
    """The value of a LIMIT or OFFSET number's text; None when not a whole number up to `maximum`."""
    if not text.isdecimal() or len(text.lstrip("0")) > _MAX_INTEGER_DIGITS or int(text) > maximum:
        return None
    return int(text)


def string_value(text: str) -> str | None:
    """The value of a STRING token's text (quotes included); None when an escape is invalid."""
    if "\\" not in text:
        return text[1:-1]
    try:
        return _unescape(Token("STRING", text, 0, 1, 1))
    except QueryError:
        return None


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
            code = _hex4(token, body, i)
            i += 6
            if 0xD800 <= code <= 0xDBFF and body[i:i + 2] == "\\u":
                low = _hex4(token, body, i)
                if 0xDC00 <= low <= 0xDFFF:  # a JSON surrogate pair: one character
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            if 0xD800 <= code <= 0xDFFF:
                at = _location_in(token, 1 + i - 6)
                raise QuerySyntaxError("\\u escape of a lone surrogate: characters beyond "
                                       "U+FFFF are written as a pair (\\ud83d\\ude00)",
                                       position=at.position, line=at.line, column=at.column)
            out.append(chr(code))
        else:
            out.append(char + follower)
            i += 2
    return "".join(out)


def _hex4(token: Token, body: str, i: int) -> int:
    """The four hexadecimal digits after the `\\u` at `body[i]`."""
    digits = body[i + 2:i + 6]
    if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        at = _location_in(token, 1 + i)
        raise QuerySyntaxError("\\u needs four hexadecimal digits",
                               position=at.position, line=at.line, column=at.column)
    return int(digits, 16)


# -- errors -----------------------------------------------------------------

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
    return "'" + _shorten(fragment) + "'"


def _shorten(fragment: str) -> str:
    return fragment[:27] + "..." if len(fragment) > 30 else fragment


__all__ = ["check_size", "count_value", "line_column", "number_value", "parse", "parse_filter",
           "string_value"]
