"""Shared data of the instance runtime tests: the blog rows, its artifact, the expected answers."""

from __future__ import annotations

import psutil

from app.contracts.artifact import Column, Relation, SchemaArtifact, Table
from tests import servers

MARIADB = servers.mariadb().connect_args()
POSTGRES = servers.postgres().connect_args()

N_USERS, N_POSTS, N_COMMENTS = 200, 1000, 3000
NESTED_QUERY = "posts { id author { name } comments(approved = true) { body } }"


# -- the data ------------------------------------------------------------------

def users_rows(version: int = 1):
    return [(i, f"user {i}", f"u{i}@example.com",
             ((i * 7) % N_POSTS) + 1 if i % 2 == 0 else None, version)
            for i in range(1, N_USERS + 1)]


def posts_rows(version: int = 1):
    return [(i, ((i * 13) % N_USERS) + 1, f"post {i}", i % 3 != 0, version)
            for i in range(1, N_POSTS + 1)]


def comments_rows(version: int = 1):
    # Bodies of ~500 characters make the snapshot a few MiB, enough for the
    # memory-limit tests to have something that does not fit.
    return [(i, ((i * 17) % N_POSTS) + 1, ((i * 31) % N_USERS) + 1,
             f"comment {i} " + "x" * (300 + (i * 7) % 400), i % 4 != 0, version)
            for i in range(1, N_COMMENTS + 1)]


def expected_nested_answer(version: int = 1) -> list[dict]:
    """What NESTED_QUERY must return, assembled in Python from the generated rows."""
    names = {u[0]: u[1] for u in users_rows(version)}
    approved: dict[int, list[dict]] = {}
    for c in comments_rows(version):
        if c[4]:
            approved.setdefault(c[1], []).append({"body": c[3]})
    return [{"id": p[0], "author": {"name": names[p[1]]}, "comments": approved.get(p[0], [])}
            for p in posts_rows(version)]


# -- the artifact ---------------------------------------------------------------

def blog_artifact(backend: str, schema: str) -> SchemaArtifact:
    """The compiled artifact of the blog schema, written out by hand."""
    users = Table("users", (Column("id", "integer", False), Column("name", "text", False),
                            Column("email", "text", note="Where we write to the user."),
                            Column("pinned_post_id", "integer"),
                            Column("version", "integer", False)), ("id",))
    posts = Table("posts", (Column("id", "integer", False), Column("author_id", "integer", False),
                            Column("title", "text", False), Column("published", "boolean", False),
                            Column("version", "integer", False)), ("id",))
    comments = Table("comments", (Column("id", "integer", False),
                                  Column("post_id", "integer", False),
                                  Column("user_id", "integer", False),
                                  Column("body", "text", False),
                                  Column("approved", "boolean", False),
                                  Column("version", "integer", False)), ("id",))
    relations = (
        Relation("posts", "author", "users", ("author_id",), ("id",), False),
        Relation("users", "posts", "posts", ("id",), ("author_id",), True),
        Relation("users", "pinned_post", "posts", ("pinned_post_id",), ("id",), False),
        Relation("posts", "users", "users", ("id",), ("pinned_post_id",), True),
        Relation("comments", "post", "posts", ("post_id",), ("id",), False),
        Relation("posts", "comments", "comments", ("id",), ("post_id",), True),
        Relation("comments", "user", "users", ("user_id",), ("id",), False),
        Relation("users", "comments", "comments", ("id",), ("user_id",), True),
    )
    return SchemaArtifact(backend=backend, schema=schema, tables=(users, posts, comments),
                          relations=relations)


# -- instances ----------------------------------------------------------------

def instance_processes(master: int) -> tuple[list[int], int | None]:
    """(the reader workers' pids, sorted; the writer's pid) of an instance's gunicorn master."""
    readers, writer = [], None
    for child in psutil.Process(master).children():
        try:
            if child.name() == "rx-writer":   # the forked writer (app/instance/writer.py)
                writer = child.pid
            else:
                readers.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return sorted(readers), writer


class Worker:
    """Proof that an instance's processes survived: the same readers, writer and snapshot."""

    def __init__(self, instance):
        self.instance = instance
        self.loaded_at = instance.health()["lastSyncAt"]
        self.processes = instance_processes(instance.handle.pid)

    def assert_alive(self) -> None:
        health = self.instance.health()
        assert self.instance.runtime.is_alive(self.instance.handle)
        # A reader that died is replaced by gunicorn (another pid); a writer
        # that died is restarted (another pid).
        now = instance_processes(self.instance.handle.pid)
        assert now == self.processes, f"(readers, writer) were {self.processes}, are {now}"
        assert (health["status"], health["serving"], health["lastSyncAt"]) == (
            "ok", True, self.loaded_at), health
