"""Fixtures: a schema artifact and SQLite snapshots laid out as app.contracts.artifact says."""

from __future__ import annotations

import json
import sqlite3

import pytest

from app.contracts.artifact import Column, Relation, SchemaArtifact, Table

_DECLARED = {"integer": "INTEGER", "float": "REAL", "decimal": "REAL", "boolean": "INTEGER",
             "binary": "BLOB"}


def _relation_pair(table, forward, reverse, target, columns, target_columns):
    return (Relation(table=table, name=forward, target=target, columns=columns,
                     target_columns=target_columns, many=False),
            Relation(table=target, name=reverse, target=table, columns=target_columns,
                     target_columns=columns, many=True))


def make_artifact() -> SchemaArtifact:
    tables = (
        # Source table app_users is exposed as `users`; full_name as `name`.
        Table(name="app_users", alias="users", primary_key=("id",), columns=(
            Column("id", "integer", nullable=False),
            Column("full_name", "text", field="name"),
            Column("email", "text"),
            Column("plan", "text"),
            Column("age", "integer"),
            Column("active", "boolean"),
            Column("score", "decimal"),
            Column("manager_id", "integer"),
            Column("joined", "date"),
            Column("prefs", "json"),
            Column("avatar", "binary"),
            Column("password_hash", "text", hidden=True),
        )),
        Table(name="posts", primary_key=("id",), columns=(
            Column("id", "integer", nullable=False),
            Column("author_id", "integer", hidden=True),
            Column("title", "text"),
            Column("published", "boolean"),
            Column("created_at", "datetime"),
        )),
        Table(name="comments", primary_key=("id",), columns=(
            Column("id", "integer", nullable=False),
            Column("post_id", "integer"),
            Column("author_id", "integer"),
            Column("body", "text"),
            Column("approved", "boolean"),
        )),
        Table(name="tags", primary_key=("id",), columns=(
            Column("id", "integer"), Column("name", "text"))),
        Table(name="post_tags", primary_key=("post_id", "tag_id"), columns=(
            Column("post_id", "integer"), Column("tag_id", "integer"))),
        Table(name="events", columns=(  # no primary key: rowid order
            Column("kind", "text"), Column("user_id", "integer"), Column("at", "datetime"))),
        Table(name="org_users", primary_key=("org_id", "user_no"), columns=(
            Column("org_id", "integer"), Column("user_no", "integer"), Column("name", "text"))),
        Table(name="badges", primary_key=("id",), columns=(
            Column("id", "integer"), Column("org_id", "integer"), Column("user_no", "integer"),
            Column("label", "text"))),
        Table(name="files", primary_key=("sha",), columns=(
            Column("sha", "binary"), Column("name", "text"))),
        Table(name="file_parts", primary_key=("id",), columns=(
            Column("id", "integer"), Column("sha", "binary"), Column("n", "integer"))),
    )
    relations = (
        *_relation_pair("posts", "author", "posts", "users", ("author_id",), ("id",)),
        *_relation_pair("comments", "post", "comments", "posts", ("post_id",), ("id",)),
        *_relation_pair("comments", "author", "comments", "users", ("author_id",), ("id",)),
        *_relation_pair("users", "manager", "reports", "users", ("manager_id",), ("id",)),
        *_relation_pair("post_tags", "post", "post_tags", "posts", ("post_id",), ("id",)),
        *_relation_pair("post_tags", "tag", "post_tags", "tags", ("tag_id",), ("id",)),
        *_relation_pair("events", "user", "events", "users", ("user_id",), ("id",)),
        *_relation_pair("badges", "holder", "badges", "org_users", ("org_id", "user_no"),
                        ("org_id", "user_no")),
        *_relation_pair("file_parts", "file", "parts", "files", ("sha",), ("sha",)),
    )
    return SchemaArtifact(backend="mysql", schema="app", tables=tables, relations=relations)


def build_snapshot(artifact: SchemaArtifact, data: dict[str, list[tuple]]) -> sqlite3.Connection:
    """An in-memory snapshot with the loader's layout and indexes, holding `data`.

    `data` maps a source table name to rows given as tuples in column order.
    """
    connection = sqlite3.connect(":memory:")
    for table in artifact.tables:
        columns = ", ".join(f'"{c.name}" {_DECLARED.get(c.type, "TEXT")}' for c in table.columns)
        key = f', PRIMARY KEY ({", ".join(table.primary_key)})' if table.primary_key else ""
        connection.execute(f'CREATE TABLE "{table.name}" ({columns}{key})')
        marks = ", ".join("?" for _ in table.columns)
        connection.executemany(f'INSERT INTO "{table.name}" VALUES ({marks})',
                               data.get(table.name, ()))
    by_alias = {table.alias: table for table in artifact.tables}
    for i, relation in enumerate(artifact.relations):
        table = by_alias[relation.table]
        connection.execute(f'CREATE INDEX IF NOT EXISTS "ix_{i}" ON "{table.name}" '
                           f'({", ".join(relation.columns)})')
    connection.commit()
    return connection


SMALL_DATA = {
    "app_users": [
        (1, "Ada", "ada@x.io", "pro", 36, 1, 9.5, None, "2020-01-05", '{"theme": "dark"}',
         b"\x00\x01", "h1"),
        (2, "Bob", "bob@x.io", "free", 17, 0, 3.25, 1, "2021-03-01", None, None, "h2"),
        (3, "Cy", "cy@x.io", "pro", None, 1, 7.0, 1, "2022-07-20", "[1, 2]", None, "h3"),
        (4, "Dee", "dee@x.io", "team", 52, 1, None, 2, "2019-11-11", "{}", b"\xff", "h4"),
        (5, 'Eve "the" O\'Neil', "eve@x.io", "free", 18, 0, 1.5, None, "2023-01-01", None,
         None, "h5"),
    ],
    "posts": [
        (10, 1, "Hello", 1, "2024-01-01T10:00:00Z"),
        (11, 1, "Draft", 0, "2024-01-02T10:00:00Z"),
        (12, 2, "Bob's post", 1, "2024-02-01T08:30:00Z"),
        (13, 3, "100% sure", 1, "2024-03-01T00:00:00Z"),
        (14, 3, "Under_score", 0, None),
        (15, 4, "hello again", 1, "2024-04-01T12:00:00Z"),
    ],
    "comments": [
        (100, 10, 2, "nice", 1),
        (101, 10, 3, "meh", 0),
        (102, 12, 1, "ok", 1),
        (103, 13, 4, "wow", 0),
        (104, 15, 1, "again", 1),
        (105, 15, 2, "spam", 0),
    ],
    "tags": [(1, "python"), (2, "sql"), (3, "misc")],
    "post_tags": [(10, 1), (10, 2), (12, 2), (13, 3), (15, 1)],
    "events": [("logout", 2, "2024-01-03T00:00:00Z"), ("login", 1, "2024-01-01T00:00:00Z"),
               ("login", 2, "2024-01-02T00:00:00Z")],
    "org_users": [(1, 1, "a1"), (1, 2, "a2"), (2, 1, "b1")],
    "badges": [(1, 1, 1, "gold"), (2, 2, 1, "bronze"), (3, 1, 1, "silver")],
    "files": [(b"\xaa\xbb", "a.txt"), (b"\x01", "b.txt")],
    "file_parts": [(1, b"\xaa\xbb", 0), (2, b"\x01", 0), (3, b"\xaa\xbb", 1)],
}


def make_big_data(users: int = 500) -> dict[str, list[tuple]]:
    """A few thousand deterministic rows: 4 posts per user, 2 comments per post."""
    plans = ("free", "pro", "team")
    data = {"app_users": [], "posts": [], "comments": [], "tags": [(1, "a"), (2, "b")],
            "post_tags": []}
    for uid in range(1, users + 1):
        data["app_users"].append((
            uid, f"user{uid:04d}", f"u{uid}@x.io", plans[uid % 3],
            None if uid % 7 == 0 else uid % 90,
            uid % 2, uid / 4, None if uid <= 10 else uid // 10, "2020-01-01",
            json.dumps({"n": uid}), None, "secret"))
        for p in range(4):
            pid = uid * 10 + p
            data["posts"].append((pid, uid, f"post {pid}", int(p % 2 == 0), None))
            data["post_tags"].append((pid, 1 + pid % 2))
            for c in range(2):
                cid = pid * 10 + c
                data["comments"].append((cid, pid, 1 + (cid % users), f"c{cid}", int(c == 1)))
    return data


@pytest.fixture(scope="session")
def make_snapshot():
    """build_snapshot, for tests that need data of their own."""
    return build_snapshot


@pytest.fixture(scope="session")
def artifact() -> SchemaArtifact:
    return make_artifact()


@pytest.fixture(scope="session")
def db(artifact) -> sqlite3.Connection:
    return build_snapshot(artifact, SMALL_DATA)


@pytest.fixture(scope="session")
def big_data() -> dict[str, list[tuple]]:
    return make_big_data()


@pytest.fixture(scope="session")
def big_db(artifact, big_data) -> sqlite3.Connection:
    return build_snapshot(artifact, big_data)


@pytest.fixture
def run(artifact, db):
    """Run a query on the small snapshot."""
    from app.query import execute

    def run(text: str, **limits) -> list[dict]:
        return execute(artifact, db, text, **limits)
    return run


def _snapshot_dump(connection: sqlite3.Connection) -> list:
    names = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return [(name, connection.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names]


@pytest.fixture
def snapshot_dump():
    """Every table's name and rows: to prove a query changed nothing."""
    return _snapshot_dump
