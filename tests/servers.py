"""The source database servers the tests use: one place, each setting overridable.

| variable                      | default     |
|-------------------------------|-------------|
| REFLEXDB_TEST_MYSQL_HOST      | 127.0.0.1   |
| REFLEXDB_TEST_MYSQL_PORT      | 3306        |
| REFLEXDB_TEST_MYSQL_USER      | root        |
| REFLEXDB_TEST_MYSQL_PASSWORD  | (empty)     |
| REFLEXDB_TEST_PG_HOST         | 127.0.0.1   |
| REFLEXDB_TEST_PG_PORT         | 5432        |
| REFLEXDB_TEST_PG_USER         | postgres    |
| REFLEXDB_TEST_PG_PASSWORD     | (empty)     |
| REFLEXDB_TEST_PG_SOURCE_DB    | test        |

The users must be able to create databases/schemas and users/roles. PostgreSQL
source schemas live in the database REFLEXDB_TEST_PG_SOURCE_DB; the control
plane's own store database is REFLEXDB_TEST_PG_DB (see tests/conftest.py).
The environment is read on first use, not at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache

import psycopg2
import psycopg2.errors
import pymysql
import pytest

from app.sources import SourceCredentials


@dataclass(frozen=True)
class Server:
    """A database server the tests administer; `database` is PostgreSQL's source database."""

    backend: str          # as SourceCredentials spells it: "mysql" or "postgres"
    product: str          # as the adapters' messages name it: "MySQL" or "PostgreSQL"
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect_args(self) -> dict:
        """Keyword arguments for pymysql.connect (MariaDB) or psycopg2.connect (PostgreSQL)."""
        args = {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password}
        if self.database is not None:
            args["dbname"] = self.database
        return args

    def credentials(self, schema: str) -> SourceCredentials:
        """Credentials of this server's administrator for one source schema."""
        return SourceCredentials(backend=self.backend, host=self.host, port=self.port,
                                 user=self.user, password=self.password, schema=schema,
                                 database=self.database)


def _setting(name: str, default: str) -> str:
    return os.environ.get(f"REFLEXDB_TEST_{name}", default)


def _port(name: str, default: int) -> int:
    value = _setting(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"REFLEXDB_TEST_{name} must be a TCP port number, not {value!r}")
    return int(value)


@cache
def mariadb() -> Server:
    """The MariaDB (MySQL) server holding the MySQL source schemas."""
    return Server(backend="mysql", product="MySQL",
                  host=_setting("MYSQL_HOST", "127.0.0.1"), port=_port("MYSQL_PORT", 3306),
                  user=_setting("MYSQL_USER", "root"), password=_setting("MYSQL_PASSWORD", ""))


@cache
def postgres() -> Server:
    """The PostgreSQL server and database holding the PostgreSQL source schemas."""
    return Server(backend="postgres", product="PostgreSQL",
                  host=_setting("PG_HOST", "127.0.0.1"), port=_port("PG_PORT", 5432),
                  user=_setting("PG_USER", "postgres"), password=_setting("PG_PASSWORD", ""),
                  database=_setting("PG_SOURCE_DB", "test"))


def connect_mariadb(**extra) -> pymysql.connections.Connection:
    """An autocommit admin connection to MariaDB; fails the test, naming the server, if down."""
    server = mariadb()
    try:
        return pymysql.connect(**server.connect_args(), autocommit=True, connect_timeout=5,
                               **extra)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at {server.address} (user {server.user!r}) is unreachable: {exc}",
                    pytrace=False)


def connect_postgres():
    """An autocommit admin connection to the PostgreSQL source database, created if missing."""
    server = postgres()
    try:
        try:
            connection = psycopg2.connect(**server.connect_args(), connect_timeout=5)
        except psycopg2.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
            _create_postgres_database(server)
            connection = psycopg2.connect(**server.connect_args(), connect_timeout=5)
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL at {server.address} (user {server.user!r}, database "
                    f"{server.database!r}) is unreachable: {exc}", pytrace=False)
    connection.autocommit = True
    return connection


def _create_postgres_database(server: Server) -> None:
    admin = psycopg2.connect(**{**server.connect_args(), "dbname": "postgres"},
                             connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{server.database}"')
    except psycopg2.errors.DuplicateDatabase:
        pass   # another test run made it in the meantime
    finally:
        admin.close()
