"""Fixtures for the build tests: real sources for the end-to-end builds.

(The compiler is pure: its tests build their `SourceSchema` by hand.) The
sources are a small MariaDB database and PostgreSQL schema named
`rx_src_<random>` on the servers of tests/servers.py, dropped at the end; an
unreachable server fails the tests.
"""

from __future__ import annotations

import secrets

import pytest

from tests import servers

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
    connection = servers.connect_mariadb()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"USE `{name}`")
            for statement in MARIADB_DDL:
                cursor.execute(statement)
        yield servers.mariadb().credentials(name)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@pytest.fixture(scope="session")
def postgres_source():
    """Credentials for a small PostgreSQL schema in the source database; dropped at the end."""
    name = f"rx_src_{secrets.token_hex(4)}"
    connection = servers.connect_postgres()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')
            for statement in POSTGRES_DDL:
                cursor.execute(statement.format(s=f'"{name}"'))
        yield servers.postgres().credentials(name)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        connection.close()
