"""Fixtures for the instance runtime tests: real MariaDB and PostgreSQL sources, real instances.

Each source gets its own database (MariaDB) or schema (PostgreSQL) named
`rx_rt_<random>`, filled with a small blog: users, posts and comments with
foreign keys both ways (posts.author_id -> users, users.pinned_post_id ->
posts, comments -> posts and users). An unreachable server fails the tests.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import psycopg2
import pymysql
import pytest
import requests
from rt_support import (
    MARIADB,
    POSTGRES,
    Worker,
    blog_artifact,
    comments_rows,
    posts_rows,
    users_rows,
)

from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_settings import InstanceSettings, SourceSettings
from app.contracts.query_keys import make_query_key, write_keys_file
from app.contracts.query_limits import QueryLimits
from app.engine.runtime import LocalProcessRuntime
from app.sources import SourceCredentials

# -- sources ----------------------------------------------------------------------

@dataclass
class BlogSource:
    backend: str
    host: str
    port: int
    user: str
    password: str
    schema: str
    database: str | None
    admin: object   # an autocommit admin connection to the source server

    def source_settings(self) -> SourceSettings:
        return SourceSettings(backend=self.backend, host=self.host, port=self.port,
                              user=self.user, schema=self.schema, database=self.database)

    def artifact(self) -> SchemaArtifact:
        return blog_artifact(self.backend, self.schema)

    def credentials(self) -> SourceCredentials:
        return SourceCredentials(backend=self.backend, host=self.host, port=self.port,
                                 user=self.user, password=self.password, schema=self.schema,
                                 database=self.database)

    def execute(self, *statements: str) -> None:
        """Run statements on the source in one transaction."""
        with self.admin.cursor() as cursor:
            cursor.execute("BEGIN")
            for statement in statements:
                cursor.execute(statement)
            cursor.execute("COMMIT")

    def set_version(self, version: int) -> None:
        """Set every row's version, all tables in one transaction."""
        self.execute(*(f"UPDATE {self.qualified(t)} SET version = {version}"
                       for t in ("users", "posts", "comments")))

    def qualified(self, table: str) -> str:
        if self.backend == "mysql":
            return f"`{self.schema}`.`{table}`"
        return f'"{self.schema}"."{table}"'


def _mariadb_admin():
    return pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def mysql_blog():
    """A MariaDB database rx_rt_* with the blog data and its own read-only user."""
    admin = _mariadb_admin()
    name = f"rx_rt_{secrets.token_hex(4)}"
    user, password = f"{name}_r", secrets.token_urlsafe(12)
    with admin.cursor() as c:
        c.execute(f"CREATE DATABASE `{name}`")
        c.execute(f"USE `{name}`")
        c.execute("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
                  "email VARCHAR(200), pinned_post_id INT NULL, version INT NOT NULL)")
        c.execute("CREATE TABLE posts (id INT PRIMARY KEY, author_id INT NOT NULL, "
                  "title VARCHAR(200) NOT NULL, published TINYINT(1) NOT NULL, "
                  "version INT NOT NULL, FOREIGN KEY (author_id) REFERENCES users (id))")
        c.execute("ALTER TABLE users ADD FOREIGN KEY (pinned_post_id) REFERENCES posts (id)")
        c.execute("CREATE TABLE comments (id INT PRIMARY KEY, post_id INT NOT NULL, "
                  "user_id INT NOT NULL, body TEXT NOT NULL, approved TINYINT(1) NOT NULL, "
                  "version INT NOT NULL, FOREIGN KEY (post_id) REFERENCES posts (id), "
                  "FOREIGN KEY (user_id) REFERENCES users (id))")
        c.execute("SET FOREIGN_KEY_CHECKS = 0")
        c.executemany("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", users_rows())
        c.executemany("INSERT INTO posts VALUES (%s, %s, %s, %s, %s)", posts_rows())
        c.executemany("INSERT INTO comments VALUES (%s, %s, %s, %s, %s, %s)", comments_rows())
        c.execute("SET FOREIGN_KEY_CHECKS = 1")
        for host in ("localhost", "127.0.0.1"):
            c.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
            c.execute(f"GRANT SELECT ON `{name}`.* TO '{user}'@'{host}'")
    source = BlogSource("mysql", MARIADB["host"], MARIADB["port"], user, password, name, None,
                        admin)
    yield source
    with admin.cursor() as c:
        for host in ("localhost", "127.0.0.1"):
            c.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        c.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.fixture(scope="session")
def postgres_blog():
    """A PostgreSQL schema rx_rt_* in database `test` with the blog data."""
    admin = psycopg2.connect(**POSTGRES, connect_timeout=5)
    admin.autocommit = True
    name = f"rx_rt_{secrets.token_hex(4)}"
    with admin.cursor() as c:
        c.execute(f'CREATE SCHEMA "{name}"')
        c.execute(f'SET search_path TO "{name}"')
        c.execute("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
                  "email VARCHAR(200), pinned_post_id INT NULL, version INT NOT NULL)")
        c.execute("CREATE TABLE posts (id INT PRIMARY KEY, "
                  "author_id INT NOT NULL REFERENCES users (id), title VARCHAR(200) NOT NULL, "
                  "published BOOLEAN NOT NULL, version INT NOT NULL)")
        c.execute("ALTER TABLE users ADD FOREIGN KEY (pinned_post_id) REFERENCES posts (id) "
                  "DEFERRABLE INITIALLY DEFERRED")
        c.execute("CREATE TABLE comments (id INT PRIMARY KEY, "
                  "post_id INT NOT NULL REFERENCES posts (id), "
                  "user_id INT NOT NULL REFERENCES users (id), body TEXT NOT NULL, "
                  "approved BOOLEAN NOT NULL, version INT NOT NULL)")
        c.execute("BEGIN")
        c.executemany("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", users_rows())
        c.executemany("INSERT INTO posts VALUES (%s, %s, %s, %s, %s)", posts_rows())
        c.executemany("INSERT INTO comments VALUES (%s, %s, %s, %s, %s, %s)", comments_rows())
        c.execute("COMMIT")
    source = BlogSource("postgres", POSTGRES["host"], POSTGRES["port"], POSTGRES["user"], "",
                        name, POSTGRES["dbname"], admin)
    yield source
    with admin.cursor() as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    admin.close()


# -- instances ----------------------------------------------------------------------

class Keys:
    """The keys file of one test instance, and keys minted for it."""

    def __init__(self, path: str):
        self.path = path
        self.secret = secrets.token_urlsafe(32)
        self.expiry: dict[str, str | None] = {}

    def add(self, key_id: str, expires_at: str | None = None) -> str:
        self.expiry[key_id] = expires_at
        self.write()
        return make_query_key(self.secret, key_id)

    def revoke(self, key_id: str) -> None:
        self.expiry.pop(key_id)
        self.write()

    def write(self) -> None:
        write_keys_file(self.path, self.secret, self.expiry)


@dataclass
class RunningInstance:
    handle: object
    runtime: LocalProcessRuntime
    keys: Keys
    key: str   # a valid query key

    @property
    def url(self) -> str:
        return self.handle.endpoint_url

    def query(self, text: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = {"Content-Type": "text/plain"}
        if key is not False:
            headers["Authorization"] = f"Bearer {key or self.key}"
        headers.update(kwargs.pop("headers", {}))
        return requests.post(f"{self.url}/query", data=text.encode(), headers=headers,
                             timeout=30, **kwargs)

    def health(self) -> dict:
        return self.runtime.health(self.handle)

    def wait_health(self, predicate, timeout: float = 30.0, what: str = "condition") -> dict:
        """Poll /health until `predicate(health)` holds; fail with the last health otherwise."""
        deadline = time.monotonic() + timeout
        health = {}
        while time.monotonic() < deadline:
            health = self.health()
            if predicate(health):
                return health
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; last health: {health}")

    def wait_loaded(self, timeout: float = 30.0) -> dict:
        return self.wait_health(lambda h: h.get("serving"), timeout, "the first snapshot")


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    return LocalProcessRuntime(tmp_path_factory.mktemp("instances"))


class InstanceStarter:
    """Starts real instance processes over BlogSources and stops them all at the end."""

    def __init__(self, runtime: LocalProcessRuntime, directory):
        self.runtime = runtime
        self.directory = directory
        self.started: list[RunningInstance] = []

    def __call__(self, source: BlogSource, *, wait: bool = True,
                 artifact: SchemaArtifact | None = None, **overrides) -> RunningInstance:
        database_id = f"db-{secrets.token_hex(4)}"
        keys = Keys(str(self.directory / f"keys-{database_id}.json"))
        key = keys.add("k_main")
        options = {"sync_interval_seconds": 3600, "memory_limit_mb": 512, "threads": 8,
                   "log_level": "info"}
        options.update(overrides)
        settings = InstanceSettings(database_id=database_id, artifact_path="-", keys_file="-",
                                    source=source.source_settings(), **options)
        handle = self.runtime.start(database_id, settings, artifact or source.artifact(),
                                    source.password, keys.path)
        instance = RunningInstance(handle, self.runtime, keys, key)
        self.started.append(instance)
        if wait:
            instance.wait_loaded()
        return instance

    def stop_all(self) -> None:
        for instance in self.started:
            self.runtime.stop(instance.handle)


@pytest.fixture
def start_instance(runtime, tmp_path):
    """Start a real instance process over a BlogSource; stopped after the test."""
    starter = InstanceStarter(runtime, tmp_path)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def mysql_instance(runtime, mysql_blog, tmp_path_factory):
    """One instance over the MariaDB blog shared by tests that do not change it."""
    starter = InstanceStarter(runtime, tmp_path_factory.mktemp("shared"))
    yield starter(mysql_blog)
    starter.stop_all()


@pytest.fixture(scope="module")
def deep_instance(runtime, mysql_blog, tmp_path_factory):
    """An instance over the MariaDB blog whose selections may nest 32 deep (answers 4 MiB)."""
    starter = InstanceStarter(runtime, tmp_path_factory.mktemp("deep"))
    yield starter(mysql_blog, limits=QueryLimits(max_selection_depth=32,
                                                 max_answer_bytes=4 * 1024 * 1024))
    starter.stop_all()


@pytest.fixture(scope="module")
def fast_instance(runtime, mysql_blog, tmp_path_factory):
    """An instance over the MariaDB blog with a 300 ms time budget; `.worker` proves it alive."""
    starter = InstanceStarter(runtime, tmp_path_factory.mktemp("fast"))
    instance = starter(mysql_blog, limits=QueryLimits(query_timeout_ms=300))
    instance.worker = Worker(instance)
    yield instance
    starter.stop_all()
