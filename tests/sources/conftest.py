"""Fixtures for the source adapter tests: real MariaDB and PostgreSQL schemas.

Each session creates one MariaDB database and one PostgreSQL schema (in the
source database of tests/servers.py) named `rx_src_<random>`, holding the
tables of tests/sources/blog.py plus a table with every mapped column type;
both are dropped at the end. The servers come from tests/servers.py (with its
environment overrides); an unreachable server fails the tests, naming it.

Tests of behaviour both adapters share take the `backend` fixture and run once
per backend; backend-specific tests use `mariadb_credentials` or
`postgres_credentials` directly.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pymysql.cursors
import pytest

from app.sources import SourceCredentials, SourceTable, open_source
from tests import servers
from tests.servers import Server, connect_mariadb, connect_postgres
from tests.sources import blog, mysql_data, postgres_data


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Backend:
    """One source backend under test: its server, schema and what its adapter must read."""

    name: str                                   # "mysql" or "postgres"
    server: Server
    credentials: SourceCredentials              # the test schema, as the administrator
    quote: Callable[[str], str]                 # an identifier for a `where`
    expected_tables: dict[str, SourceTable]     # introspection, by table name
    expected_all_types_rows: list[tuple]        # all_types in storage types, sorted
    is_server_side: Callable[[object, int], bool]   # (cursor, batch size) -> streamed?


def _mysql_server_side(cursor, batch_size: int) -> bool:
    return isinstance(cursor, pymysql.cursors.SSCursor)


def _postgres_server_side(cursor, batch_size: int) -> bool:
    # A named cursor lives on the server and fetches itersize rows a round trip.
    return cursor.name is not None and cursor.itersize == batch_size


@pytest.fixture(scope="session")
def blog_rows():
    """The rows of the blog tables, as inserted: {table: [tuple, ...]}."""
    return {"users": blog.users_rows(), "posts": blog.posts_rows(),
            "comments": blog.comments_rows()}


@pytest.fixture
def free_port():
    return closed_port()


# -- MariaDB ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def mariadb_schema():
    """The name of a filled MariaDB database; dropped at the end of the session."""
    name = f"rx_src_{secrets.token_hex(4)}"
    connection = connect_mariadb()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            mysql_data.fill(cursor, name)
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@pytest.fixture(scope="session")
def mariadb_credentials(mariadb_schema):
    return servers.mariadb().credentials(mariadb_schema)


@pytest.fixture(scope="session")
def mysql_backend(mariadb_credentials):
    return Backend(name="mysql", server=servers.mariadb(), credentials=mariadb_credentials,
                   quote=partial(blog.quote, backend="mysql"),
                   expected_tables=mysql_data.expected_tables(mariadb_credentials.schema),
                   expected_all_types_rows=mysql_data.EXPECTED_ALL_TYPES_ROWS,
                   is_server_side=_mysql_server_side)


@pytest.fixture
def mariadb_admin():
    """Run one statement on MariaDB as its administrator."""
    connection = connect_mariadb()

    def run(sql, params=None):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    yield run
    connection.close()


@pytest.fixture
def mariadb_user(mariadb_schema):
    """(user, password) of a MariaDB user with no grants; dropped afterwards."""
    user = f"rx_src_{secrets.token_hex(4)}"
    password = f"Pw-{secrets.token_hex(8)}"
    connection = connect_mariadb()
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        yield user, password
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        connection.close()


# -- PostgreSQL ------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_schema():
    """The name of a filled PostgreSQL schema in the source database; dropped at the end."""
    name = f"rx_src_{secrets.token_hex(4)}"
    connection = connect_postgres()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')
            postgres_data.fill(cursor, name)
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        connection.close()


@pytest.fixture(scope="session")
def postgres_credentials(postgres_schema):
    return servers.postgres().credentials(postgres_schema)


@pytest.fixture(scope="session")
def postgres_backend(postgres_credentials):
    return Backend(name="postgres", server=servers.postgres(), credentials=postgres_credentials,
                   quote=partial(blog.quote, backend="postgres"),
                   expected_tables=postgres_data.expected_tables(postgres_credentials.schema),
                   expected_all_types_rows=postgres_data.EXPECTED_ALL_TYPES_ROWS,
                   is_server_side=_postgres_server_side)


@pytest.fixture
def postgres_admin():
    """Run one statement on the PostgreSQL source database as its administrator."""
    connection = connect_postgres()

    def run(sql, params=None):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    yield run
    connection.close()


@pytest.fixture
def postgres_role(postgres_schema):
    """A PostgreSQL login role with no grants on the schema; dropped afterwards."""
    role = f"rx_src_{secrets.token_hex(4)}"
    connection = connect_postgres()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE ROLE "{role}" LOGIN')
        yield role
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP OWNED BY "{role}"')
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')
        connection.close()


# -- both ------------------------------------------------------------------------

@pytest.fixture(params=["mysql", "postgres"])
def backend(request) -> Backend:
    """Each source backend in turn."""
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def source(backend):
    """An open adapter on `backend`'s test schema."""
    with open_source(backend.credentials) as opened:
        yield opened
