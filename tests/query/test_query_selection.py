"""Selections over the snapshot: fields, wildcards, relations, nesting, conversions."""

ADA = {"id": 1, "name": "Ada", "email": "ada@x.io", "plan": "pro", "age": 36, "active": True,
       "score": 9.5, "manager_id": None, "joined": "2020-01-05", "prefs": {"theme": "dark"},
       "avatar": "AAE="}
BOB = {"id": 2, "name": "Bob", "email": "bob@x.io", "plan": "free", "age": 17, "active": False,
       "score": 3.25, "manager_id": 1, "joined": "2021-03-01", "prefs": None, "avatar": None}
CY = {"id": 3, "name": "Cy", "email": "cy@x.io", "plan": "pro", "age": None, "active": True,
      "score": 7.0, "manager_id": 1, "joined": "2022-07-20", "prefs": [1, 2], "avatar": None}
DEE = {"id": 4, "name": "Dee", "email": "dee@x.io", "plan": "team", "age": 52, "active": True,
       "score": None, "manager_id": 2, "joined": "2019-11-11", "prefs": {}, "avatar": "/w=="}


def test_fields_in_selection_order_with_aliases(run):
    # `users` is table app_users; `name` is column full_name.
    assert run("users { email name id }") == [
        {"email": "ada@x.io", "name": "Ada", "id": 1},
        {"email": "bob@x.io", "name": "Bob", "id": 2},
        {"email": "cy@x.io", "name": "Cy", "id": 3},
        {"email": "dee@x.io", "name": "Dee", "id": 4},
        {"email": "eve@x.io", "name": 'Eve "the" O\'Neil', "id": 5},
    ]


def test_star_is_every_visible_column_converted(run):
    # boolean -> bool, json -> parsed, binary -> base64; the hidden password_hash never shows.
    assert run("users(id <= 4) { * }") == [ADA, BOB, CY, DEE]


def test_ellipsis_adds_one_level_of_relations(run):
    result = run("posts(id = 12) { ... }")
    assert result == [{
        "id": 12, "title": "Bob's post", "published": True,
        "created_at": "2024-02-01T08:30:00Z",
        "author": BOB,
        "comments": [{"id": 102, "post_id": 12, "author_id": 1, "body": "ok", "approved": True}],
        "post_tags": [{"post_id": 12, "tag_id": 2}],
    }]


def test_explicit_entries_add_to_and_override_wildcards(run):
    assert run("users(id = 2) { * posts { id title } }") == [
        {**BOB, "posts": [{"id": 12, "title": "Bob's post"}]}]
    # An override keeps the wildcard's place; explicit names before a wildcard keep theirs.
    result = run("posts(id = 12) { title ... author { name } id }")
    assert result == [{"title": "Bob's post", "id": 12, "published": True,
                       "created_at": "2024-02-01T08:30:00Z", "author": {"name": "Bob"},
                       "comments": [{"id": 102, "post_id": 12, "author_id": 1, "body": "ok",
                                     "approved": True}],
                       "post_tags": [{"post_id": 12, "tag_id": 2}]}]
    assert list(result[0]) == ["title", "id", "published", "created_at", "author", "comments",
                               "post_tags"]


def test_forward_relation_is_object_or_null(run):
    assert run("users { id manager { name } }") == [
        {"id": 1, "manager": None}, {"id": 2, "manager": {"name": "Ada"}},
        {"id": 3, "manager": {"name": "Ada"}}, {"id": 4, "manager": {"name": "Bob"}},
        {"id": 5, "manager": None}]


def test_reverse_relation_is_array_and_self_reference(run):
    assert run("users { name reports { name } }") == [
        {"name": "Ada", "reports": [{"name": "Bob"}, {"name": "Cy"}]},
        {"name": "Bob", "reports": [{"name": "Dee"}]},
        {"name": "Cy", "reports": []}, {"name": "Dee", "reports": []},
        {"name": 'Eve "the" O\'Neil', "reports": []}]


def test_join_columns_do_not_leak(run):
    # author_id (hidden) and id are fetched to join but not selected.
    assert run("posts(id IN (10, 15)) { title author { name } comments { body } }") == [
        {"title": "Hello", "author": {"name": "Ada"},
         "comments": [{"body": "nice"}, {"body": "meh"}]},
        {"title": "hello again", "author": {"name": "Dee"},
         "comments": [{"body": "again"}, {"body": "spam"}]}]


def test_three_levels_with_nested_filters(run):
    assert run('users(id IN (1, 2)) { name posts { title comments(approved = true) '
               '{ body author { name manager { name } } } } }') == [
        {"name": "Ada", "posts": [
            {"title": "Hello", "comments": [
                {"body": "nice", "author": {"name": "Bob", "manager": {"name": "Ada"}}}]},
            {"title": "Draft", "comments": []}]},
        {"name": "Bob", "posts": [
            {"title": "Bob's post", "comments": [
                {"body": "ok", "author": {"name": "Ada", "manager": None}}]}]},
    ]


def test_forward_relation_filter_gives_null(run):
    assert run('posts(id IN (10, 12)) { id author(plan = "pro") { name } }') == [
        {"id": 10, "author": {"name": "Ada"}}, {"id": 12, "author": None}]


def test_many_to_many_through_link_table(run):
    assert run("posts(id IN (10, 13, 14)) { id post_tags { tag { name } } }") == [
        {"id": 10, "post_tags": [{"tag": {"name": "python"}}, {"tag": {"name": "sql"}}]},
        {"id": 13, "post_tags": [{"tag": {"name": "misc"}}]},
        {"id": 14, "post_tags": []}]


def test_composite_keys(run):
    assert run("org_users { name badges { label } }") == [
        {"name": "a1", "badges": [{"label": "gold"}, {"label": "silver"}]},
        {"name": "a2", "badges": []},
        {"name": "b1", "badges": [{"label": "bronze"}]}]
    assert run("badges { label holder { name org_id } }") == [
        {"label": "gold", "holder": {"name": "a1", "org_id": 1}},
        {"label": "bronze", "holder": {"name": "b1", "org_id": 2}},
        {"label": "silver", "holder": {"name": "a1", "org_id": 1}}]


def test_binary_keys(run):
    assert run("files { sha name parts { n file { name } } }") == [
        {"sha": "AQ==", "name": "b.txt", "parts": [{"n": 0, "file": {"name": "b.txt"}}]},
        {"sha": "qrs=", "name": "a.txt", "parts": [{"n": 0, "file": {"name": "a.txt"}},
                                                   {"n": 1, "file": {"name": "a.txt"}}]}]


def test_table_without_primary_key_in_rowid_order(run):
    assert run("events { kind user { name } }") == [
        {"kind": "logout", "user": {"name": "Bob"}},
        {"kind": "login", "user": {"name": "Ada"}},
        {"kind": "login", "user": {"name": "Bob"}}]
    assert run("users(id IN (1, 2)) { id events { kind } }") == [
        {"id": 1, "events": [{"kind": "login"}]},
        {"id": 2, "events": [{"kind": "logout"}, {"kind": "login"}]}]


def test_repeated_name_appears_once(run):
    assert run("users(id = 1) { id name id }") == [{"id": 1, "name": "Ada"}]


def test_backticked_names(run):
    assert run("`users`(`name` = \"Ada\") { `id` }") == [{"id": 1}]


def test_conversions_keep_odd_values_servable(artifact):
    import sqlite3

    from app.query import execute
    connection = sqlite3.connect(":memory:")
    connection.execute('CREATE TABLE "app_users" (id, full_name, email, plan, age, active, '
                       'score, manager_id, joined, prefs, avatar, password_hash)')
    connection.execute("INSERT INTO app_users VALUES (1, 'x', NULL, NULL, NULL, 7, 2.5, NULL, "
                       "NULL, 'not json', 'text in a blob column', NULL)")
    assert execute(artifact, connection, "users { active score prefs avatar }") == [
        {"active": True, "score": 2.5, "prefs": "not json",
         "avatar": "dGV4dCBpbiBhIGJsb2IgY29sdW1u"}]
