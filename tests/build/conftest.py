"""Fixtures for the build tests: real sources for the end-to-end builds.

(The compiler is pure: its tests build their `SourceSchema` by hand.) The
sources are a small MariaDB database and PostgreSQL schema named
`rx_src_<random>`, dropped at the end; an unreachable server fails the tests.
"""

from __future__ import annotations

import secrets

import psycopg2
import pymysql
import pytest

from app.sources import SourceCredentials

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "",
            "dbname": "test"}


MARIADB_DDL = [
    ("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
    "password_hash VARCHAR(100) NOT NULL)"),
    ("CREATE TABLE posts (id INT PRIMARY KEY, author_id INT NOT NULL, title VARCHAR(200) NOT NULL, "
    "CONSTRAINT fk_posts_author FOREIGN KEY (author_id) REFERENCES users (id))"),
    "CREATE TABLE audit (at DATETIME NOT NULL, what TEXT NOT NULL)",
    "INSERT INTO users VALUES (1, 'ada', 'x'), (2, 'bob', 'y')",
    "INSERT INTO posts VALUES (1, 1, 'hello'), (2, 2, 'again')",
    "ANALYZE TABLE users, posts, audit",
]

POSTGRES_DDL = [
    ("CREATE TABLE {s}.users (id integer PRIMARY KEY, name text NOT NULL, "
    "password_hash text NOT NULL)"),
    ("CREATE TABLE {s}.posts (id integer PRIMARY KEY, author_id integer NOT NULL, "
    "title text NOT NULL, CONSTRAINT fk_posts_author FOREIGN KEY (author_id) "
    "REFERENCES {s}.users (id))"),
    "CREATE TABLE {s}.audit (at timestamp NOT NULL, what text NOT NULL)",
    "INSERT INTO {s}.users VALUES (1, 'ada', 'x'), (2, 'bob', 'y')",
    "INSERT INTO {s}.posts VALUES (1, 1, 'hello'), (2, 2, 'again')",
    "ANALYZE {s}.users, {s}.posts, {s}.audit",
]


@pytest.fixture(scope="session")
def mariadb_source():
    """Credentials for a small MariaDB database; dropped at the end of the session."""
    name = f"rx_src_{secrets.token_hex(4)}"
    try:
        connection = pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at {MARIADB['host']}:{MARIADB['port']} is unreachable: {exc}")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"USE `{name}`")
            for statement in MARIADB_DDL:
                cursor.execute(statement)
        yield SourceCredentials(backend="mysql", host=MARIADB["host"], port=MARIADB["port"],
                                user=MARIADB["user"], password=MARIADB["password"], schema=name)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@pytest.fixture(scope="session")
def postgres_source():
    """Credentials for a small PostgreSQL schema in database `test`; dropped at the end."""
    name = f"rx_src_{secrets.token_hex(4)}"
    try:
        connection = psycopg2.connect(connect_timeout=5, **POSTGRES)
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES['host']}:{POSTGRES['port']} (database "
                    f"{POSTGRES['dbname']!r}) is unreachable: {exc}")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')
            for statement in POSTGRES_DDL:
                cursor.execute(statement.format(s=f'"{name}"'))
        yield SourceCredentials(backend="postgres", host=POSTGRES["host"],
                                port=POSTGRES["port"], user=POSTGRES["user"],
                                password=POSTGRES["password"], schema=name,
                                database=POSTGRES["dbname"])
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        connection.close()
