"""What every source test schema holds, whatever the backend (a small blog and odd names),
and how the tests read it back.

The blog: users (users.manager_id -> users), posts (-> users), comments (->
posts and users). The odd tables have names that need quoting in every way a
statement can misread them: `%` as the drivers' %-formatting sees it (`%s`,
`%%`, `%(x)s`, a bare `%`), both quote characters and spaces.
"""

from __future__ import annotations

N_USERS, N_POSTS, N_COMMENTS = 1000, 2000, 3000


def users_rows():
    # Users 1-10 manage nobody and have no manager; the others report to one of them.
    return [(i, f"user {i}", f"u{i}@example.com" if i % 5 else None,
             None if i <= 10 else (i % 10) + 1, i % 3 != 0) for i in range(1, N_USERS + 1)]


def posts_rows():
    return [(i, (i * 7) % N_USERS + 1, f"post {i}", i % 2 == 0) for i in range(1, N_POSTS + 1)]


def comments_rows():
    return [(i, (i * 11) % N_POSTS + 1, (i * 13) % N_USERS + 1, f"comment {i}")
            for i in range(1, N_COMMENTS + 1)]


# -- odd names -------------------------------------------------------------------

def quote(name: str, backend: str) -> str:
    """`name` quoted for a statement run with parameters (`%` doubled); the fixtures' own
    quoting, so a broken adapter fails its tests rather than the fixtures."""
    mark = "`" if backend == "mysql" else '"'
    return mark + name.replace(mark, mark * 2).replace("%", "%%") + mark


ODD_TABLE = 'odd %s %% %(x)s "q" `b` name'
ODD_COLUMNS = ("id", "a%b", "%s", "%%", "%(x)s", '"q"', "`b`", "has space", "j `%s`")
# The same rows on both backends, as the adapters return them (storage types).
ODD_ROWS = [
    (1, "a%b", 10, "%%", "%(x)s", 'q"', "b`", "one two", '{"k": "%s"}'),
    (2, "c", 20, "%s", "y", "z", "w", "three", None),
    (3, "100%", 30, None, "%(y)s", '"', "`", " ", '[1, "%%"]'),
]

CHILD_TABLE = 'child %s "q" `b`'
CHILD_FOREIGN_KEY = 'fk %s "q" `b`'
CHILD_ROWS = [(1, 1), (2, 1), (3, 2), (4, None)]

# A schema config that gives every odd name a query name.
ODD_FIELDS = {"a%b": "a_pct_b", "%s": "pct_s", "%%": "pct_pct", "%(x)s": "pct_x", '"q"': "dq",
              "`b`": "bt", "has space": "has_space", "j `%s`": "j"}


def odd_config(odd_where: str | None = None, child_where: str | None = None) -> dict:
    """The schema config exposing the odd tables as `odd` and `child`, with optional wheres."""
    odd = {"name": ODD_TABLE, "alias": "odd", "field_aliases": dict(ODD_FIELDS)}
    child = {"name": CHILD_TABLE, "alias": "child", "field_aliases": {"parent %id": "parent_id"}}
    if odd_where:
        odd["where"] = odd_where
    if child_where:
        child["where"] = child_where
    return {"version": 1, "tables": [odd, child]}


def read_all(source, table, **kwargs) -> list[tuple]:
    """Every row `source.stream_rows(table, **kwargs)` yields, batches joined."""
    return [row for batch in source.stream_rows(table, **kwargs) for row in batch]
