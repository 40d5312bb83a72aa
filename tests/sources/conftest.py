"""Fixtures for the source adapter tests: real MariaDB and PostgreSQL schemas.

Each session creates one MariaDB database and one PostgreSQL schema (in the
`test` database) named `rx_src_<random>`, holding a small blog with foreign
keys in both directions (posts.author_id -> users, comments -> posts and users,
users.manager_id -> users), a composite key (regions <- offices), a table
without a primary key (events), a table with every mapped column type
(all_types) and a table whose names need quoting. Both are dropped at the end.
An unreachable server fails the tests, naming the server.
"""

from __future__ import annotations

import secrets
import socket

import psycopg2
import pymysql
import pytest

from app.sources import SourceCredentials

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "",
            "dbname": "test"}

N_USERS, N_POSTS, N_COMMENTS = 1000, 2000, 3000


def users_rows():
    # Users 1-10 manage nobody and have no manager; the others report to one of them.
    return [(i, f"user {i}", f"u{i}@example.com" if i % 5 else None,
             None if i <= 10 else (i % 10) + 1, i % 3 != 0) for i in range(1, N_USERS + 1)]


def posts_rows():
    return [(i, (i * 7) % N_USERS + 1, f"post {i}", i % 2 == 0) for i in range(1, N_POSTS + 1)]


def comments_rows():
    return [(i, (i * 11) % N_POSTS + 1, (i * 13) % N_USERS + 1, f"comment {i}")
            for i in range(1, N_COMMENTS + 1)]


def connect_mariadb(**extra):
    try:
        return pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5, **extra)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at {MARIADB['host']}:{MARIADB['port']} is unreachable: {exc}")


def connect_postgres():
    try:
        connection = psycopg2.connect(connect_timeout=5, **POSTGRES)
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES['host']}:{POSTGRES['port']} (database "
                    f"{POSTGRES['dbname']!r}) is unreachable: {exc}")
    connection.autocommit = True
    return connection


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


MARIADB_DDL = [
    """CREATE TABLE users (
        id INT PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        email VARCHAR(200) NULL,
        manager_id INT NULL,
        active TINYINT(1) NOT NULL DEFAULT 1,
        CONSTRAINT fk_users_manager FOREIGN KEY (manager_id) REFERENCES users (id))""",
    """CREATE TABLE posts (
        id INT PRIMARY KEY,
        author_id INT NOT NULL,
        title VARCHAR(200) NOT NULL,
        published BOOL NOT NULL,
        CONSTRAINT fk_posts_author FOREIGN KEY (author_id) REFERENCES users (id))""",
    """CREATE TABLE comments (
        id INT PRIMARY KEY,
        post_id INT NOT NULL,
        author_id INT NOT NULL,
        body TEXT NOT NULL,
        CONSTRAINT fk_comments_author FOREIGN KEY (author_id) REFERENCES users (id),
        CONSTRAINT fk_comments_post FOREIGN KEY (post_id) REFERENCES posts (id))""",
    """CREATE TABLE regions (
        country CHAR(2) NOT NULL,
        code VARCHAR(10) NOT NULL,
        name VARCHAR(100) NOT NULL,
        PRIMARY KEY (country, code))""",
    """CREATE TABLE offices (
        id INT PRIMARY KEY,
        country CHAR(2) NOT NULL,
        region_code VARCHAR(10) NOT NULL,
        CONSTRAINT fk_offices_region FOREIGN KEY (country, region_code)
            REFERENCES regions (country, code))""",
    """CREATE TABLE events (
        happened_at DATETIME NOT NULL,
        kind VARCHAR(20) NOT NULL,
        payload JSON NULL)""",
    """CREATE TABLE all_types (
        id BIGINT PRIMARY KEY,
        c_tinyint TINYINT, c_bool TINYINT(1), c_bit1 BIT(1), c_bit8 BIT(8),
        c_smallint SMALLINT, c_mediumint MEDIUMINT, c_int INT, c_bigint_u BIGINT UNSIGNED,
        c_year YEAR, c_decimal DECIMAL(10,2), c_float FLOAT, c_double DOUBLE,
        c_char CHAR(3), c_varchar VARCHAR(20), c_text TEXT, c_enum ENUM('a','b'),
        c_set SET('x','y'), c_json JSON, c_binary BINARY(4), c_varbinary VARBINARY(8),
        c_blob BLOB, c_date DATE, c_datetime DATETIME, c_datetime6 DATETIME(6),
        c_timestamp TIMESTAMP NULL, c_time TIME, c_uuid UUID)""",
    """CREATE TABLE `odd name` (
        id INT PRIMARY KEY,
        `per%cent"col` VARCHAR(20))""",
]

MARIADB_ALL_TYPES_ROWS = [
    ("INSERT INTO all_types VALUES (1, -5, 1, b'1', b'11111111', -300, 70000, -2000000000, "
    "18446744073709551615, 2024, 12345678.91, 1.5, 2.25, 'ab', 'héllo', 'long text', 'b', "
    "'x,y', '{\"a\": [1, 2]}', 'ab', x'00ff', x'deadbeef', '2024-02-29', "
    "'2024-02-29 13:14:15', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15', "
    "'-01:02:03', '123e4567-e89b-12d3-a456-426614174000')"),
    ("INSERT INTO all_types (id, c_bool, c_bit1, c_time, c_date, c_datetime) "
    "VALUES (2, 0, b'0', '838:59:59', '0000-00-00', '0000-00-00 00:00:00')"),
    "INSERT INTO all_types (id) VALUES (3)",
]


@pytest.fixture(scope="session")
def blog():
    """The rows of the blog tables, as inserted: {table: [tuple, ...]}."""
    return {"users": users_rows(), "posts": posts_rows(), "comments": comments_rows()}


@pytest.fixture
def free_port():
    return closed_port()


@pytest.fixture
def mariadb_admin():
    """Run one statement on MariaDB as root."""
    connection = connect_mariadb()

    def run(sql, params=None):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    yield run
    connection.close()


@pytest.fixture
def postgres_admin():
    """Run one statement on PostgreSQL (database `test`) as postgres."""
    connection = connect_postgres()

    def run(sql, params=None):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    yield run
    connection.close()


@pytest.fixture(scope="session")
def mariadb_schema():
    """The name of a filled MariaDB database; dropped at the end of the session."""
    name = f"rx_src_{secrets.token_hex(4)}"
    connection = connect_mariadb()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            cursor.execute(f"USE `{name}`")
            # Zero dates are part of the test data.
            cursor.execute("SET SESSION sql_mode = ''")
            for statement in MARIADB_DDL:
                cursor.execute(statement)
            cursor.executemany("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", users_rows())
            cursor.executemany("INSERT INTO posts VALUES (%s, %s, %s, %s)", posts_rows())
            cursor.executemany("INSERT INTO comments VALUES (%s, %s, %s, %s)", comments_rows())
            cursor.execute("INSERT INTO regions VALUES ('FR', 'IDF', 'Île-de-France'), "
                           "('FR', 'OCC', 'Occitanie'), ('US', 'CA', 'California')")
            cursor.execute("INSERT INTO offices VALUES (1, 'FR', 'IDF'), (2, 'US', 'CA')")
            cursor.execute("INSERT INTO events VALUES ('2024-01-01 00:00:00', 'b', NULL), "
                           "('2023-12-31 23:59:59', 'a', '[1, \"two\"]')")
            for statement in MARIADB_ALL_TYPES_ROWS:
                cursor.execute(statement)
            cursor.execute("INSERT INTO `odd name` VALUES (1, 'a%b'), (2, 'c')")
            cursor.execute(f"ANALYZE TABLE `{name}`.users")
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@pytest.fixture(scope="session")
def mariadb_credentials(mariadb_schema):
    return SourceCredentials(backend="mysql", host=MARIADB["host"], port=MARIADB["port"],
                             user=MARIADB["user"], password=MARIADB["password"],
                             schema=mariadb_schema)


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


POSTGRES_DDL = [
    "CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')",
    "CREATE DOMAIN {s}.positive_int AS integer CHECK (VALUE > 0)",
    """CREATE TABLE {s}.users (
        id integer PRIMARY KEY,
        name text NOT NULL,
        email varchar(200),
        manager_id integer REFERENCES {s}.users (id),
        active boolean NOT NULL DEFAULT true)""",
    """CREATE TABLE {s}.posts (
        id integer PRIMARY KEY,
        author_id integer NOT NULL,
        title varchar(200) NOT NULL,
        published boolean NOT NULL,
        CONSTRAINT fk_posts_author FOREIGN KEY (author_id) REFERENCES {s}.users (id))""",
    """CREATE TABLE {s}.comments (
        id integer PRIMARY KEY,
        post_id integer NOT NULL,
        author_id integer NOT NULL,
        body text NOT NULL,
        CONSTRAINT fk_comments_author FOREIGN KEY (author_id) REFERENCES {s}.users (id),
        CONSTRAINT fk_comments_post FOREIGN KEY (post_id) REFERENCES {s}.posts (id))""",
    """CREATE TABLE {s}.regions (
        country char(2) NOT NULL,
        code varchar(10) NOT NULL,
        name text NOT NULL,
        PRIMARY KEY (country, code))""",
    """CREATE TABLE {s}.offices (
        id integer PRIMARY KEY,
        country char(2) NOT NULL,
        region_code varchar(10) NOT NULL,
        CONSTRAINT fk_offices_region FOREIGN KEY (country, region_code)
            REFERENCES {s}.regions (country, code))""",
    """CREATE TABLE {s}.events (
        happened_at timestamp NOT NULL,
        kind text NOT NULL,
        payload jsonb)""",
    """CREATE TABLE {s}.all_types (
        id bigint PRIMARY KEY,
        c_int2 smallint, c_int4 integer, c_int8 bigint, c_numeric numeric(10,2),
        c_float4 real, c_float8 double precision, c_bool boolean, c_text text,
        c_varchar varchar(20), c_char char(3), c_uuid uuid, c_enum {s}.mood, c_json json,
        c_jsonb jsonb, c_bytea bytea, c_date date, c_timestamp timestamp(6),
        c_timestamptz timestamptz, c_time time, c_timetz timetz, c_int_array integer[],
        c_text_array text[], c_money money, c_interval interval, c_domain {s}.positive_int,
        c_inet inet)""",
    """CREATE TABLE {s}."odd name" (
        id integer PRIMARY KEY,
        "per%cent""col" varchar(20))""",
]

POSTGRES_ALL_TYPES_ROWS = [
    ("INSERT INTO {s}.all_types VALUES (1, -300, -2000000000, 9000000000000000000, "
    "12345678.91, 1.5, 2.25, true, 'long text', 'héllo', 'ab', "
    "'123e4567-e89b-12d3-a456-426614174000', 'happy', '{{\"b\": 1,  \"a\": [1, 2]}}', "
    "'{{\"b\": 1, \"a\": [1, 2]}}', '\\x00ff', '2024-02-29', '2024-02-29 13:14:15.123456', "
    "'2024-02-29 13:14:15+02', '13:14:15', '13:14:15-05:30', '{{1,2,NULL}}', "
    "'{{\"a b\",c}}', 12.34, '1 day 02:00:00', 7, '10.0.0.1')"),
    ("INSERT INTO {s}.all_types (id, c_bool, c_date, c_timestamp, c_timestamptz) "
    "VALUES (2, false, 'infinity', '-infinity', 'infinity')"),
    "INSERT INTO {s}.all_types (id) VALUES (3)",
]


@pytest.fixture(scope="session")
def postgres_schema():
    """The name of a filled PostgreSQL schema in database `test`; dropped at the end."""
    name = f"rx_src_{secrets.token_hex(4)}"
    connection = connect_postgres()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{name}"')
            for statement in POSTGRES_DDL + POSTGRES_ALL_TYPES_ROWS:
                cursor.execute(statement.format(s=f'"{name}"'))
            cursor.executemany(f'INSERT INTO "{name}".users VALUES (%s, %s, %s, %s, %s)',
                               users_rows())
            cursor.executemany(f'INSERT INTO "{name}".posts VALUES (%s, %s, %s, %s)',
                               posts_rows())
            cursor.executemany(f'INSERT INTO "{name}".comments VALUES (%s, %s, %s, %s)',
                               comments_rows())
            cursor.execute(f"INSERT INTO \"{name}\".regions VALUES ('FR', 'IDF', "
                           f"'Île-de-France'), ('FR', 'OCC', 'Occitanie'), "
                           f"('US', 'CA', 'California')")
            cursor.execute(f"INSERT INTO \"{name}\".offices VALUES (1, 'FR', 'IDF'), "
                           f"(2, 'US', 'CA')")
            cursor.execute(f"INSERT INTO \"{name}\".events VALUES "
                           f"('2024-01-01 00:00:00', 'b', NULL), "
                           f"('2023-12-31 23:59:59', 'a', '[1, \"two\"]')")
            cursor.execute(f"INSERT INTO \"{name}\".\"odd name\" VALUES (1, 'a%b'), (2, 'c')")
            cursor.execute(f'ANALYZE "{name}".users')
        yield name
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        connection.close()


@pytest.fixture(scope="session")
def postgres_credentials(postgres_schema):
    return SourceCredentials(backend="postgres", host=POSTGRES["host"], port=POSTGRES["port"],
                             user=POSTGRES["user"], password=POSTGRES["password"],
                             schema=postgres_schema, database=POSTGRES["dbname"])


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
