"""Fixtures for the change data capture tests: servers with replication on, and one schema each.

The session starts a MariaDB with binary logging (ROW) and a PostgreSQL with
wal_level=logical from temporary data dirs on free ports (tests/servers.py), and stops and
deletes them at the end. Each test gets a fresh schema `rx_cdc_<random>` on its backend with
two replicated tables and one that the artifact leaves out.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid

import psycopg2
import pymysql
import pytest

from app.build.compile import compile_artifact
from app.sources import SourceCredentials, open_source
from app.sources.cdc import change_capture, release_all
from tests import servers

REPLICATED = ("items", "notes")


@pytest.fixture(scope="session")
def binlog_server():
    server = servers.BinlogMariaDB(servers.temporary_root("rx_cdc_mariadb_"))
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def logical_server():
    server = servers.LogicalPostgres(servers.temporary_root("rx_cdc_postgres_"))
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@dataclasses.dataclass
class Case:
    """One backend's schema on its CDC server, and how to change it."""

    backend: str
    local: servers.LocalServer
    schema: str
    database_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    server_id: int = dataclasses.field(default_factory=lambda: 1000 + secrets.randbelow(10**6))

    @property
    def credentials(self) -> SourceCredentials:
        return self.local.server.credentials(self.schema)

    def connect(self):
        if self.backend == "mysql":
            return pymysql.connect(**self.local.server.connect_args(), autocommit=True,
                                   connect_timeout=5, database=self.schema)
        connection = psycopg2.connect(**self.local.server.connect_args(), connect_timeout=5)
        connection.autocommit = True
        return connection

    def execute(self, *statements, params=None) -> None:
        """Each statement on its own (autocommit); `{s}` is the quoted schema."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement.format(s=self.q(self.schema)), params)
        finally:
            connection.close()

    def transaction(self, *statements, rollback: bool = False) -> None:
        """The statements as one transaction, committed (or rolled back)."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("BEGIN")
                for statement in statements:
                    cursor.execute(statement.format(s=self.q(self.schema)))
                cursor.execute("ROLLBACK" if rollback else "COMMIT")
        finally:
            connection.close()

    def q(self, name: str) -> str:
        return f"`{name}`" if self.backend == "mysql" else f'"{name}"'

    def artifact(self, tables=REPLICATED):
        with open_source(self.credentials) as source:
            built = compile_artifact(source.introspect())
        return dataclasses.replace(built, tables=tuple(t for t in built.tables
                                                       if t.name in tables))

    def capture(self, schema_artifact=None, **options):
        return change_capture(self.credentials, schema_artifact or self.artifact(),
                              database_id=self.database_id, server_id=self.server_id, **options)

    def start(self, schema_artifact=None, **options):
        """A capture and the stream position of a snapshot taken now (nothing loaded)."""
        capture = self.capture(schema_artifact, **options)
        with open_source(self.credentials) as source:
            with capture.snapshot_start(source) as position:
                pass
        return capture, position


def _mysql_case(local) -> Case:
    name = f"rx_cdc_{secrets.token_hex(4)}"
    admin = pymysql.connect(**local.server.connect_args(), autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    admin.close()
    case = Case("mysql", local, name)
    case.execute("CREATE TABLE {s}.items (id INT PRIMARY KEY, name VARCHAR(50), qty INT)",
                 "CREATE TABLE {s}.notes (id INT PRIMARY KEY, body TEXT)",
                 "CREATE TABLE {s}.ignored (id INT PRIMARY KEY, v INT)")
    return case


def _postgres_case(local) -> Case:
    name = f"rx_cdc_{secrets.token_hex(4)}"
    case = Case("postgres", local, name)
    case.execute("CREATE SCHEMA {s}",
                 "CREATE TABLE {s}.items (id int PRIMARY KEY, name varchar(50), qty int)",
                 "CREATE TABLE {s}.notes (id int PRIMARY KEY, body text)",
                 "CREATE TABLE {s}.ignored (id int PRIMARY KEY, v int)")
    return case


def _drop(case: Case) -> None:
    if case.backend == "mysql":
        admin = pymysql.connect(**case.local.server.connect_args(), autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{case.schema}`")
        admin.close()
    else:
        release_all(case.credentials, case.database_id)
        case.execute("DROP SCHEMA IF EXISTS {s} CASCADE")


@pytest.fixture
def mysql_case(binlog_server):
    case = _mysql_case(binlog_server)
    yield case
    _drop(case)


@pytest.fixture
def postgres_case(logical_server):
    case = _postgres_case(logical_server)
    yield case
    _drop(case)


@pytest.fixture(params=["mysql", "postgres"])
def case(request) -> Case:
    """Each backend in turn."""
    return request.getfixturevalue(f"{request.param}_case")


def read(reader, count: int, timeout: float = 20.0) -> list:
    """The next `count` items of `reader`; fails if they do not come within `timeout` s."""
    items = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        assert time.monotonic() < deadline, f"got {len(items)} of {count} items: {items!r:.2000}"
        item = reader.poll(timeout=0.5)
        if item is not None:
            items.append(item)
    return items


def read_quiet(reader, seconds: float = 1.5) -> list:
    """Whatever `reader` hands out within `seconds` (to check that nothing more comes)."""
    items = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        item = reader.poll(timeout=0.3)
        if item is not None:
            items.append(item)
    return items
