"""The MariaDB test schema: how it is made and what the MySQL adapter must read from it."""

from __future__ import annotations

from app.sources import ForeignKey, SourceColumn, SourceTable
from tests.sources.blog import (
    CHILD_FOREIGN_KEY,
    CHILD_ROWS,
    CHILD_TABLE,
    ODD_COLUMNS,
    ODD_ROWS,
    ODD_TABLE,
    comments_rows,
    posts_rows,
    quote,
    users_rows,
)


def q(name: str) -> str:
    return quote(name, "mysql")


_ODD_TYPES = ("INT PRIMARY KEY", "VARCHAR(20)", "INT NOT NULL", "VARCHAR(20)", "TEXT",
              "VARCHAR(20)", "VARCHAR(20)", "VARCHAR(20)", "JSON")

# Every statement runs with a parameter sequence, so `%%` in quoted names is undone.
DDL = [
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
    (f"CREATE TABLE {q(ODD_TABLE)} ("
     + ", ".join(f"{q(name)} {kind}" for name, kind in zip(ODD_COLUMNS, _ODD_TYPES, strict=True))
     + ")"),
    (f"CREATE TABLE {q(CHILD_TABLE)} ({q('id')} INT PRIMARY KEY, {q('parent %id')} INT NULL, "
     f"CONSTRAINT {q(CHILD_FOREIGN_KEY)} FOREIGN KEY ({q('parent %id')}) "
     f"REFERENCES {q(ODD_TABLE)} ({q('id')}))"),
]

_ALL_TYPES_ROWS = [
    ("INSERT INTO all_types VALUES (1, -5, 1, b'1', b'11111111', -300, 70000, -2000000000, "
     "18446744073709551615, 2024, 12345678.91, 1.5, 2.25, 'ab', 'héllo', 'long text', 'b', "
     "'x,y', '{\"a\": [1, 2]}', 'ab', x'00ff', x'deadbeef', '2024-02-29', "
     "'2024-02-29 13:14:15', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15', "
     "'-01:02:03', '123e4567-e89b-12d3-a456-426614174000')"),
    ("INSERT INTO all_types (id, c_bool, c_bit1, c_time, c_date, c_datetime) "
     "VALUES (2, 0, b'0', '838:59:59', '0000-00-00', '0000-00-00 00:00:00')"),
    "INSERT INTO all_types (id) VALUES (3)",
]


def fill(cursor, schema: str) -> None:
    """Create the test tables in `schema` (an empty database) and insert their rows."""
    cursor.execute(f"USE {q(schema)}", ())
    # Zero dates are part of the test data.
    cursor.execute("SET SESSION sql_mode = ''")
    for statement in DDL + _ALL_TYPES_ROWS:
        cursor.execute(statement, ())
    cursor.executemany("INSERT INTO users VALUES (%s, %s, %s, %s, %s)", users_rows())
    cursor.executemany("INSERT INTO posts VALUES (%s, %s, %s, %s)", posts_rows())
    cursor.executemany("INSERT INTO comments VALUES (%s, %s, %s, %s)", comments_rows())
    cursor.execute("INSERT INTO regions VALUES ('FR', 'IDF', 'Île-de-France'), "
                   "('FR', 'OCC', 'Occitanie'), ('US', 'CA', 'California')")
    cursor.execute("INSERT INTO offices VALUES (1, 'FR', 'IDF'), (2, 'US', 'CA')")
    cursor.execute("INSERT INTO events VALUES ('2024-01-01 00:00:00', 'b', NULL), "
                   "('2023-12-31 23:59:59', 'a', '[1, \"two\"]')")
    cursor.executemany(f"INSERT INTO {q(ODD_TABLE)} VALUES ({', '.join(['%s'] * 9)})", ODD_ROWS)
    cursor.executemany(f"INSERT INTO {q(CHILD_TABLE)} VALUES (%s, %s)", CHILD_ROWS)
    cursor.execute("ANALYZE TABLE users")


def _col(name, type_, source_type, nullable=True):
    return SourceColumn(name=name, type=type_, source_type=source_type, nullable=nullable)


def expected_tables(schema: str) -> dict[str, SourceTable]:
    """What `introspect` must find in the schema, by table name."""
    col = _col
    return {
        "users": SourceTable(
            name="users",
            columns=(col("id", "integer", "int(11)", False),
                     col("name", "text", "varchar(100)", False),
                     col("email", "text", "varchar(200)"), col("manager_id", "integer", "int(11)"),
                     col("active", "boolean", "tinyint(1)", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_users_manager", ("manager_id",), "users", ("id",)),)),
        "posts": SourceTable(
            name="posts",
            columns=(col("id", "integer", "int(11)", False),
                     col("author_id", "integer", "int(11)", False),
                     col("title", "text", "varchar(200)", False),
                     col("published", "boolean", "tinyint(1)", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_posts_author", ("author_id",), "users", ("id",)),)),
        "comments": SourceTable(
            name="comments",
            columns=(col("id", "integer", "int(11)", False),
                     col("post_id", "integer", "int(11)", False),
                     col("author_id", "integer", "int(11)", False),
                     col("body", "text", "text", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_comments_author", ("author_id",), "users", ("id",)),
                          ForeignKey("fk_comments_post", ("post_id",), "posts", ("id",)))),
        "regions": SourceTable(
            name="regions",
            columns=(col("country", "text", "char(2)", False),
                     col("code", "text", "varchar(10)", False),
                     col("name", "text", "varchar(100)", False)),
            primary_key=("country", "code")),
        "offices": SourceTable(
            name="offices",
            columns=(col("id", "integer", "int(11)", False),
                     col("country", "text", "char(2)", False),
                     col("region_code", "text", "varchar(10)", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_offices_region", ("country", "region_code"), "regions",
                                     ("country", "code")),)),
        "events": SourceTable(
            name="events",
            columns=(col("happened_at", "datetime", "datetime", False),
                     col("kind", "text", "varchar(20)", False), col("payload", "json", "json"))),
        ODD_TABLE: SourceTable(
            name=ODD_TABLE,
            columns=(col("id", "integer", "int(11)", False), col("a%b", "text", "varchar(20)"),
                     col("%s", "integer", "int(11)", False), col("%%", "text", "varchar(20)"),
                     col("%(x)s", "text", "text"), col('"q"', "text", "varchar(20)"),
                     col("`b`", "text", "varchar(20)"), col("has space", "text", "varchar(20)"),
                     col("j `%s`", "json", "json")),
            primary_key=("id",)),
        CHILD_TABLE: SourceTable(
            name=CHILD_TABLE,
            columns=(col("id", "integer", "int(11)", False),
                     col("parent %id", "integer", "int(11)")),
            primary_key=("id",),
            foreign_keys=(ForeignKey(CHILD_FOREIGN_KEY, ("parent %id",), ODD_TABLE, ("id",)),)),
        "all_types": SourceTable(
            name="all_types",
            columns=(
                col("id", "integer", "bigint(20)", False),
                col("c_tinyint", "integer", "tinyint(4)"),
                col("c_bool", "boolean", "tinyint(1)"), col("c_bit1", "boolean", "bit(1)"),
                col("c_bit8", "integer", "bit(8)"), col("c_smallint", "integer", "smallint(6)"),
                col("c_mediumint", "integer", "mediumint(9)"), col("c_int", "integer", "int(11)"),
                col("c_bigint_u", "integer", "bigint(20) unsigned"),
                col("c_year", "integer", "year(4)"), col("c_decimal", "decimal", "decimal(10,2)"),
                col("c_float", "float", "float"), col("c_double", "float", "double"),
                col("c_char", "text", "char(3)"), col("c_varchar", "text", "varchar(20)"),
                col("c_text", "text", "text"), col("c_enum", "text", "enum('a','b')"),
                col("c_set", "text", "set('x','y')"), col("c_json", "json", "json"),
                col("c_binary", "binary", "binary(4)"),
                col("c_varbinary", "binary", "varbinary(8)"),
                col("c_blob", "binary", "blob"), col("c_date", "date", "date"),
                col("c_datetime", "datetime", "datetime"),
                col("c_datetime6", "datetime", "datetime(6)"),
                col("c_timestamp", "datetime", "timestamp"), col("c_time", "time", "time"),
                col("c_uuid", "text", "uuid")),
            primary_key=("id",)),
    }


EXPECTED_ALL_TYPES_ROWS = [
    (1, -5, 1, 1, 255, -300, 70000, -2000000000, 18446744073709551615, 2024, 12345678.91, 1.5,
     2.25, "ab", "héllo", "long text", "b", "x,y", '{"a": [1, 2]}', b"ab\x00\x00", b"\x00\xff",
     b"\xde\xad\xbe\xef", "2024-02-29", "2024-02-29T13:14:15", "2024-02-29T13:14:15.123456",
     "2024-02-29T13:14:15Z", "-01:02:03", "123e4567-e89b-12d3-a456-426614174000"),
    # Zero dates have no ISO form: NULL. TIME is a duration, kept as written.
    (2, None, 0, 0) + (None,) * 22 + ("838:59:59", None),
    (3,) + (None,) * 27,
]
