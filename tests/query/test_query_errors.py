"""Names that do not resolve and queries that make no sense, with their exact messages."""

import pytest

from app.query import QueryError, QuerySyntaxError, UnknownNameError, execute

USERS_FIELDS = ("id", "name", "email", "plan", "age", "active", "score", "manager_id", "joined",
                "prefs", "avatar")
USERS_RELATIONS = ("posts", "comments", "manager", "reports", "events")
TABLES = ("users", "posts", "comments", "tags", "post_tags", "events", "org_users", "badges",
          "files", "file_parts")


@pytest.mark.parametrize("text, kind, name, table, available, position", [
    ("customers { id }", "table", "customers", None, TABLES, 0),
    ("app_users { id }", "table", "app_users", None, TABLES, 0),  # source name, not the alias
    ("users { id emial }", "field or relation", "emial", "users",
     USERS_FIELDS + USERS_RELATIONS, 11),
    ("users { full_name }", "field or relation", "full_name", "users",
     USERS_FIELDS + USERS_RELATIONS, 8),  # the source name of field `name`
    ("users { password_hash }", "field or relation", "password_hash", "users",
     USERS_FIELDS + USERS_RELATIONS, 8),  # hidden
    ("users { id postz { id } }", "relation", "postz", "users", USERS_RELATIONS, 11),
    ("users { posts { nope } }", "field or relation", "nope", "posts",
     ("id", "title", "published", "created_at", "author", "comments", "post_tags"), 16),
    ("users(password_hash = \"h1\") { id }", "field", "password_hash", "users", USERS_FIELDS, 6),
    ("users(posts.nope = 1) { id }", "field", "nope", "posts",
     ("id", "title", "published", "created_at"), 12),
    ("users(postz.id = 1) { id }", "relation", "postz", "users", USERS_RELATIONS, 6),
    ("posts(author_id = 1) { id }", "field", "author_id", "posts",
     ("id", "title", "published", "created_at"), 6),
    ("users { id ORDER BY nope }", "field", "nope", "users", USERS_FIELDS, 20),
])
def test_unknown_names(artifact, db, text, kind, name, table, available, position):
    with pytest.raises(UnknownNameError) as caught:
        execute(artifact, db, text)
    error = caught.value
    assert (error.kind, error.name, error.table, error.available, error.position) == (
        kind, name, table, available, position)


def test_unknown_name_message(artifact, db):
    with pytest.raises(UnknownNameError) as caught:
        execute(artifact, db, "posts { id titel }")
    assert str(caught.value) == (
        "line 1, column 12: unknown field or relation 'titel' on table 'posts' (available: id, "
        "title, published, created_at, author, comments, post_tags)")


@pytest.mark.parametrize("text, message", [
    ("users { posts }",
     "line 1, column 9: 'posts' on table 'users' is a relation: give it a selection, "
     "e.g. posts { * }"),
    ("users { name { id } }",
     "line 1, column 9: 'name' on table 'users' is a field, not a relation: it takes no braces"),
    ("users(posts = 1) { id }",
     "line 1, column 7: 'posts' on table 'users' is a relation: compare one of its fields, "
     "e.g. posts.<field>"),
    ("users(posts.author IS NULL) { id }",
     "line 1, column 13: 'author' on table 'posts' is a relation: compare one of its fields, "
     "e.g. posts.author.<field>"),
    ("users(name.first = 1) { id }",
     "line 1, column 7: 'name' on table 'users' is a field, not a relation: only relations "
     "can be followed with '.'"),
    ("users { id ORDER BY posts }",
     "line 1, column 21: 'posts' on table 'users' is a relation: ORDER BY takes fields only"),
    ("posts { author { name ORDER BY name } }",
     "line 1, column 32: 'author' is a single object: ORDER BY, LIMIT and OFFSET apply only "
     "to lists"),
    ("users(id IN ()) { id }", "line 1, column 7: IN needs at least one value for 'id'"),
])
def test_meaningless_queries(artifact, db, text, message):
    with pytest.raises(QueryError) as caught:
        execute(artifact, db, text)
    assert not isinstance(caught.value, (UnknownNameError, QuerySyntaxError))
    assert str(caught.value) == message


def test_non_text_query(artifact, db):
    with pytest.raises(QueryError, match="must be text"):
        execute(artifact, db, b"users { id }")
