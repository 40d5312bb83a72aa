"""The query language's grammar (Lark, LALR) and the parser built from it."""

from __future__ import annotations

import functools

from lark import Lark

# Keywords are case-insensitive strings. Lark's contextual lexer only tries the
# terminals the parser can accept at each point, so a keyword is reserved only
# where it could appear: `order`, `limit`, `asc`, `in`... stay usable as field
# and table names. ORDER BY, LIMIT and OFFSET share the selection body with
# field names, so they are recognised only in their full form (`ORDER BY`,
# `LIMIT <number>`, `OFFSET <number>`) and win over NAME by priority.
GRAMMAR = r"""
query: selection
filter_only: or_expr

// -- selections ------------------------------------------------------------
selection: NAME [filter] _LBRACE body _RBRACE
filter: _LPAR or_expr _RPAR
body: entry+ [order_by] [limit] [offset]
?entry: selection
      | NAME                      -> field
      | STAR
      | ELLIPSIS

order_by: ORDER_BY order_key (_COMMA order_key)*
order_key: NAME [ASC | DESC] [NULLS (FIRST | LAST)]
limit: LIMIT NUMBER
offset: OFFSET NUMBER

// -- filters ---------------------------------------------------------------
?or_expr: and_expr (_OR and_expr)*        -> disjunction
?and_expr: not_expr (_AND not_expr)*      -> conjunction
?not_expr: NOT not_expr                   -> negation
         | _LPAR or_expr _RPAR
         | predicate
?predicate: path OP value                          -> comparison
          | path [NOT] (LIKE | ILIKE) value        -> like
          | path [NOT] _IN _LPAR [value (_COMMA value)*] _RPAR -> in_list
          | path _IS [NOT] _NULL                   -> is_null
          | path [NOT] _BETWEEN value _AND value   -> between
path: NAME (_DOT NAME)*
?value: STRING | NUMBER | TRUE | FALSE | NULL_VALUE


// -- terminals -------------------------------------------------------------
// A bare identifier, or any text in backticks (a doubled backtick inside
// stands for one); backticks let a name clash with a keyword or hold spaces.
NAME: /[^\W\d]\w*|`(?:[^`]|``)+`/
STRING: /"(?:[^"\\]|\\.)*"/s
NUMBER: /[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/
OP: /!=|<>|<=|>=|=|<|>/

ORDER_BY.2: /order\s+by\b/i
LIMIT.2: /limit\b(?=\s*[-+]?\d)/i
OFFSET.2: /offset\b(?=\s*[-+]?\d)/i
ASC: "asc"i
DESC: "desc"i
NULLS: "nulls"i
FIRST: "first"i
LAST: "last"i

_AND: "and"i
_OR: "or"i
NOT: "not"i
LIKE: "like"i
ILIKE: "ilike"i
_IN: "in"i
_IS: "is"i
_NULL: "null"i
NULL_VALUE: "null"i
_BETWEEN: "between"i
TRUE: "true"i
FALSE: "false"i

STAR: "*"
ELLIPSIS: "..."
_LBRACE: "{"
_RBRACE: "}"
_LPAR: "("
_RPAR: ")"
_COMMA: ","
_DOT: "."

%ignore /\s+/
"""


@functools.cache
def lark_parser() -> Lark:
    """The shared LALR parser (built on first use, not at import)."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual",
                start=["query", "filter_only"], propagate_positions=False,
                maybe_placeholders=True)
