"""The instance query language: parse, plan and run queries over a snapshot.

User manual
===========

A query selects rows of one table and, through relations, rows related to
them. It is plain text, POSTed to the instance's `/query` endpoint; the answer
is a JSON array of objects.

Shape
-----
    <table> [ ( <filter> ) ] { <entries> [ORDER BY ...] [LIMIT n] [OFFSET m] }

    users { id name email }
    users(plan = "pro" AND age >= 18) { id name ORDER BY name DESC LIMIT 10 OFFSET 20 }
    posts { id author { name } comments(approved = true) { body ORDER BY id DESC LIMIT 3 } }

Names are the exposed ones: a table's alias, a column's field name, a
relation's name; hidden columns cannot be selected, filtered or ordered on.
Names are case-sensitive; keywords are not. A name that is not a plain
identifier (or that you want to keep from reading as a keyword)
can be written in backticks: `` `order` ``, `` `first name` ``, a doubled
backtick standing for one.

Entries
-------
- `name`: a field (scalar column).
- `name { ... }` or `name(filter) { ... }`: a relation, selected like a
  table. A forward relation (the key is on this table, e.g. `posts.author`)
  gives an object or null; a reverse one (e.g. `users.posts`) an array.
  Relations nest to any depth.
- `*`: every field of the table, in column order.
- `...`: every field plus every relation, one level deep, each with `*`.
- Explicit entries add to a wildcard or override it in place:
  `users { * posts { id title } }`, `users { ... manager { name } }`.
  A name given twice appears once. Keys in each object come in selection
  order; columns fetched only to join relations never appear.

Filters
-------
In parentheses right after a table or relation name:

    field = value      field != value (or <>)   <   <=   >   >=
    field LIKE "pattern"        field NOT LIKE "pattern"
    field ILIKE "pattern"       field NOT ILIKE "pattern"
    field IN (v1, v2, ...)      field NOT IN (v1, ...)
    field BETWEEN low AND high  field NOT BETWEEN low AND high
    field IS NULL               field IS NOT NULL
    a AND b    a OR b    NOT a    ( ... )       (NOT > AND > OR)

Values: strings in double quotes with JSON escapes (`\\"`, `\\\\`, `\\n`,
`\\t`, `\\uXXXX`...; any other backslash pair is kept as typed, so
`"100\\%"` is a LIKE pattern for a literal `%`); numbers (`42`, `-7`,
`3.25`, `1e3`); `true`, `false`. `null` is only tested with IS [NOT] NULL.
LIKE patterns: `%` any run of characters, `_` one character, `\\` escapes
the next one. LIKE is case-sensitive, ILIKE is not (ASCII letters).
Dates and times compare as their ISO text ("2024-05-01").

A field can be reached through relations with a dotted path; through to-many
relations it means "any": `users(posts.published = true) { id }` keeps users
with at least one published post, `users(posts.comments.approved = true)`
users with an approved comment on one of their posts, and
`posts(author.plan = "pro")` posts whose author is on the pro plan. Each
predicate is its own "any": `posts.a = 1 AND posts.b = 2` may be satisfied by
two different posts; `NOT posts.published = true` keeps users with no
published post.

Order and paging
----------------
`ORDER BY field [ASC|DESC] [NULLS FIRST|NULLS LAST], ...`, then `LIMIT n`,
then `OFFSET m` (each optional, in that order) close a selection's braces,
after its entries. They work on the root and on every to-many relation, where
they apply per parent row (each user's three latest posts:
`users { id posts { id ORDER BY id DESC LIMIT 3 } }`); a to-one relation takes
none of them. Without ORDER BY rows come in primary-key order (rowid order
for tables without a primary key), which also breaks ties after ORDER BY.
NULLs sort first in ascending order and last in descending order unless
NULLS FIRST/LAST says otherwise. ORDER BY, LIMIT and OFFSET are recognised
only in that full form (`LIMIT` followed by a number), so fields named
`order`, `limit` or `offset` still work as plain entries.

Limits: the root returns at most `default_limit` rows (1000) unless it gives
its own LIMIT; an explicit LIMIT anywhere above `max_limit` (10000) is an
error, not silently clamped. Nested relations without LIMIT return all
related rows.

Errors
------
All are `QueryError` (HTTP 400 `invalid_query`); the message never holds
SQL or internals, and starts with `line L, column C: ` when it points at a
spot in the text (`position` is the 0-based offset):
- `QuerySyntaxError`: the text does not follow the grammar; for
  `users { id = }`: `line 1, column 12: expected a field name, '*', '...',
  '(', '{', ORDER BY, LIMIT, OFFSET or '}' but found '='`. Also an empty
  query or an unterminated string.
- `UnknownNameError`: `line 1, column 12: unknown field or relation 'titel'
  on table 'posts' (available: id, title, published, created_at, author,
  comments, post_tags)`; attributes `kind` ("table", "field", "relation",
  "field or relation"), `name`, `table` (None for a table), `available`.
- `QueryError`: everything else, e.g. `IN ()` empty, `= null`, a number
  outside 64-bit range, comparing a relation to a value (`posts = 1`), a
  relation without braces or a field with them, LIMIT above the maximum,
  ORDER BY/LIMIT/OFFSET on a to-one relation, a query over 100,000
  characters.

API
---
- `execute(artifact, connection, text, *, default_limit=1000, max_limit=10000)`
- `parse(text) -> Query`; `compile_query(artifact, text) -> Plan` (cached);
  `plan_query(artifact, query) -> Plan`; `run_plan(plan, connection, ...)`;
  `QueryEngine(artifact, ...)` caches plans per artifact by query text.
- `parse_filter(text)`, `compile_filter(expression, table, dialect)`: the
  load-time `where` of the schema config, for `sqlite`, `mysql`, `postgres`.
  Plain names only (no dotted paths); a name is a field name first (hidden
  columns included), else a source column name.
"""

from .errors import QueryError, QuerySyntaxError, UnknownNameError
from .executor import DEFAULT_LIMIT, MAX_LIMIT, QueryEngine, execute, run_plan
from .filters import DIALECTS, compile_filter
from .parser import parse, parse_filter
from .planner import Plan, compile_query, plan_query

__all__ = ["QueryError", "QuerySyntaxError", "UnknownNameError", "execute", "run_plan",
           "QueryEngine", "DEFAULT_LIMIT", "MAX_LIMIT", "DIALECTS", "compile_filter",
           "parse", "parse_filter", "Plan", "compile_query", "plan_query"]
