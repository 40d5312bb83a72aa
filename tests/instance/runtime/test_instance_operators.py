"""The query language over snapshots loaded from real MariaDB and PostgreSQL sources.

Both sources hold the same blog; each query must give the same answer on both,
and that answer must equal the one computed in Python from the generated rows.
This is where the loader's type conversions (booleans, NULLs, text) meet the
query language's operators.
"""

from __future__ import annotations

import pytest
from rt_support import blog_artifact, comments_rows, posts_rows, users_rows

from app.instance.snapshot import Snapshot
from app.query import QueryError, execute
from app.sources import open_source

USERS = [dict(zip(("id", "name", "email", "pinned_post_id", "version"), r, strict=True)) for r in users_rows()]
POSTS = [dict(zip(("id", "author_id", "title", "published", "version"), r, strict=True)) for r in posts_rows()]
COMMENTS = [dict(zip(("id", "post_id", "user_id", "body", "approved", "version"), r, strict=True))
            for r in comments_rows()]


@pytest.fixture(scope="module", params=["mysql", "postgres"])
def snapshot(request):
    blog = request.getfixturevalue("mysql_blog" if request.param == "mysql" else "postgres_blog")
    artifact = blog_artifact(blog.backend, blog.schema)
    with open_source(blog.credentials()) as source:
        loaded = Snapshot.load(artifact, source)
    yield artifact, loaded
    loaded.close()


def run(snapshot, text, **limits):
    artifact, loaded = snapshot
    return execute(artifact, loaded.connection, text, **limits)


def ids(rows):
    return [row["id"] for row in rows]


def pick(row, *fields):
    return {f: row[f] for f in fields}


CASES = [
    ('users(id = 5) { id name }', [{"id": 5, "name": "user 5"}]),
    ('users(id != 1 AND id <= 3) { id }', [{"id": 2}, {"id": 3}]),
    ('users(id < 3) { id }', [{"id": 1}, {"id": 2}]),
    ('users(id > 198) { id }', [{"id": 199}, {"id": 200}]),
    ('users(id >= 199 OR id <= 1) { id }', [{"id": 1}, {"id": 199}, {"id": 200}]),
    ('users(name LIKE "user 1_") { id }', [{"id": i} for i in range(10, 20)]),
    ('users(name LIKE "USER 2") { id }', []),
    ('users(name ILIKE "USER 2") { id }', [{"id": 2}]),
    ('users(id IN (7, 3, 1)) { id }', [{"id": 1}, {"id": 3}, {"id": 7}]),
    ('users(pinned_post_id IS NULL AND id <= 5) { id pinned_post_id }',
     [{"id": i, "pinned_post_id": None} for i in (1, 3, 5)]),
    ('users(pinned_post_id IS NOT NULL AND id <= 5) { id }', [{"id": 2}, {"id": 4}]),
    ('posts(id BETWEEN 10 AND 12) { id published }',
     [{"id": 10, "published": True}, {"id": 11, "published": True}, {"id": 12, "published": False}]),
    ('posts(published = false AND id <= 9) { id }', [{"id": 3}, {"id": 6}, {"id": 9}]),
    ('posts(NOT (id > 2) OR id = 1000) { id }', [{"id": 1}, {"id": 2}, {"id": 1000}]),
    ('posts(id = 1) { * }', [pick(POSTS[0], "id", "author_id", "title", "published", "version")]),
    ('posts(id <= 20) { id title ORDER BY title DESC LIMIT 3 OFFSET 2 }',
     [pick(p, "id", "title") for p in sorted(POSTS[:20], key=lambda p: p["title"], reverse=True)[2:5]]),
    ('users { id LIMIT 2 OFFSET 198 }', [{"id": 199}, {"id": 200}]),
    ('users(name = "x\\" OR 1=1 --") { id }', []),
    ("users(name = \"'; DROP TABLE users; --\") { id }", []),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_operators(snapshot, text, expected):
    assert run(snapshot, text) == expected


def test_default_row_cap_and_explicit_limit(snapshot):
    assert len(run(snapshot, "comments { id }")) == 1000
    assert len(run(snapshot, "comments { id }", default_limit=50)) == 50
    assert len(run(snapshot, "comments { id LIMIT 3000 }")) == 3000


def test_three_levels_of_nesting(snapshot):
    text = ("users(id = 1) { name posts(id <= 400) { title comments(approved = true) "
            "{ id user { name } } } }")
    names = {u["id"]: u["name"] for u in USERS}
    posts = [p for p in POSTS if p["author_id"] == 1 and p["id"] <= 400]
    expected = [{"name": "user 1", "posts": [
        {"title": p["title"], "comments": [
            {"id": c["id"], "user": {"name": names[c["user_id"]]}}
            for c in COMMENTS if c["post_id"] == p["id"] and c["approved"]]}
        for p in posts]}]
    assert posts and expected[0]["posts"][0]["comments"]
    assert run(snapshot, text) == expected


def test_everything_one_level_deep(snapshot):
    [row] = run(snapshot, "posts(id = 2) { ... }")
    post = POSTS[1]
    author = USERS[post["author_id"] - 1]
    assert row == {
        **post,
        "author": author,
        "users": [u for u in USERS if u["pinned_post_id"] == 2],
        "comments": [c for c in COMMENTS if c["post_id"] == 2],
    }


def test_reverse_relation_filter_has_any_semantics(snapshot):
    expected = sorted({p["author_id"] for p in POSTS if not p["published"] and p["author_id"] <= 20})
    assert ids(run(snapshot, "users(posts.published = false AND id <= 20) { id }")) == expected


def test_forward_relation_filter_two_hops(snapshot):
    author_of = {p["id"]: p["author_id"] for p in POSTS}
    expected = [c["id"] for c in COMMENTS if c["id"] <= 300 and author_of[c["post_id"]] == 1]
    assert expected
    assert ids(run(snapshot, "comments(post.author.id = 1 AND id <= 300) { id }")) == expected


def test_nested_paging_is_per_parent(snapshot):
    rows = run(snapshot, "posts(id <= 3) { id comments { id ORDER BY id DESC LIMIT 2 } }")
    expected = [{"id": p, "comments": [{"id": c["id"]} for c in sorted(
        (c for c in COMMENTS if c["post_id"] == p), key=lambda c: -c["id"])[:2]]} for p in (1, 2, 3)]
    assert rows == expected


@pytest.mark.parametrize("text,fragment", [
    ("users { id", "line 1, column 11"),
    ("users(id = ) { id }", "line 1, column 12"),
    ("people { id }", "people"),
    ("users { nickname }", "nickname"),
    ("users(posts.nope = 1) { id }", "nope"),
])
def test_errors_name_the_problem(snapshot, text, fragment):
    with pytest.raises(QueryError) as caught:
        run(snapshot, text)
    assert fragment in str(caught.value)


def test_injection_attempts_leave_the_snapshot_alone(snapshot):
    for text in ('users(name = "1; DELETE FROM users") { id }', 'users { id } ; DELETE FROM users',
                 'users(`name"; DROP TABLE users; --` = 1) { id }'):
        try:
            run(snapshot, text)
        except QueryError:
            pass
    assert len(run(snapshot, "users { id LIMIT 1000 }")) == len(USERS)
