"""The PostgreSQL test schema: how it is made and what the PostgreSQL adapter must read from it."""

from __future__ import annotations

from psycopg2.extras import execute_values

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
    return quote(name, "postgres")


_ODD_TYPES = ("integer PRIMARY KEY", "varchar(20)", "integer NOT NULL", "varchar(20)", "text",
              "varchar(20)", "varchar(20)", "varchar(20)", "jsonb")

# `{s}` is the quoted schema. Every statement runs with a parameter sequence, so
# `%%` in quoted names is undone.
DDL = [
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


def _odd_ddl(s: str) -> list[str]:
    columns = ", ".join(f"{q(name)} {kind}"
                        for name, kind in zip(ODD_COLUMNS, _ODD_TYPES, strict=True))
    return [f"CREATE TABLE {s}.{q(ODD_TABLE)} ({columns})",
            f"CREATE TABLE {s}.{q(CHILD_TABLE)} ({q('id')} integer PRIMARY KEY, "
            f"{q('parent %id')} integer, CONSTRAINT {q(CHILD_FOREIGN_KEY)} "
            f"FOREIGN KEY ({q('parent %id')}) REFERENCES {s}.{q(ODD_TABLE)} ({q('id')}))"]


def fill(cursor, schema: str) -> None:
    """Create the test tables in `schema` (an empty schema) and insert their rows."""
    s = q(schema)
    for statement in DDL:
        cursor.execute(statement.format(s=s), ())
    for statement in _odd_ddl(s):
        cursor.execute(statement, ())
    for table, rows in (("users", users_rows()), ("posts", posts_rows()),
                        ("comments", comments_rows())):
        execute_values(cursor, f"INSERT INTO {s}.{table} VALUES %s", rows, page_size=1000)
    cursor.execute(f"INSERT INTO {s}.regions VALUES ('FR', 'IDF', 'Île-de-France'), "
                   f"('FR', 'OCC', 'Occitanie'), ('US', 'CA', 'California')", ())
    cursor.execute(f"INSERT INTO {s}.offices VALUES (1, 'FR', 'IDF'), (2, 'US', 'CA')", ())
    cursor.execute(f"INSERT INTO {s}.events VALUES ('2024-01-01 00:00:00', 'b', NULL), "
                   f"('2023-12-31 23:59:59', 'a', '[1, \"two\"]')", ())
    cursor.executemany(f"INSERT INTO {s}.{q(ODD_TABLE)} VALUES ({', '.join(['%s'] * 9)})",
                       ODD_ROWS)
    cursor.executemany(f"INSERT INTO {s}.{q(CHILD_TABLE)} VALUES (%s, %s)", CHILD_ROWS)
    cursor.execute(f"ANALYZE {s}.users", ())


def _col(name, type_, source_type, nullable=True):
    return SourceColumn(name=name, type=type_, source_type=source_type, nullable=nullable)


def expected_tables(schema: str) -> dict[str, SourceTable]:
    """What `introspect` must find in the schema, by table name."""
    col, varchar = _col, "character varying"
    return {
        "users": SourceTable(
            name="users",
            columns=(col("id", "integer", "integer", False), col("name", "text", "text", False),
                     col("email", "text", f"{varchar}(200)"),
                     col("manager_id", "integer", "integer"),
                     col("active", "boolean", "boolean", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("users_manager_id_fkey", ("manager_id",), "users",
                                     ("id",)),)),
        "posts": SourceTable(
            name="posts",
            columns=(col("id", "integer", "integer", False),
                     col("author_id", "integer", "integer", False),
                     col("title", "text", f"{varchar}(200)", False),
                     col("published", "boolean", "boolean", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_posts_author", ("author_id",), "users", ("id",)),)),
        "comments": SourceTable(
            name="comments",
            columns=(col("id", "integer", "integer", False),
                     col("post_id", "integer", "integer", False),
                     col("author_id", "integer", "integer", False),
                     col("body", "text", "text", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_comments_author", ("author_id",), "users", ("id",)),
                          ForeignKey("fk_comments_post", ("post_id",), "posts", ("id",)))),
        "regions": SourceTable(
            name="regions",
            columns=(col("country", "text", "character(2)", False),
                     col("code", "text", f"{varchar}(10)", False),
                     col("name", "text", "text", False)),
            primary_key=("country", "code")),
        "offices": SourceTable(
            name="offices",
            columns=(col("id", "integer", "integer", False),
                     col("country", "text", "character(2)", False),
                     col("region_code", "text", f"{varchar}(10)", False)),
            primary_key=("id",),
            foreign_keys=(ForeignKey("fk_offices_region", ("country", "region_code"), "regions",
                                     ("country", "code")),)),
        "events": SourceTable(
            name="events",
            columns=(col("happened_at", "datetime", "timestamp without time zone", False),
                     col("kind", "text", "text", False), col("payload", "json", "jsonb"))),
        ODD_TABLE: SourceTable(
            name=ODD_TABLE,
            columns=(col("id", "integer", "integer", False),
                     col("a%b", "text", f"{varchar}(20)"),
                     col("%s", "integer", "integer", False), col("%%", "text", f"{varchar}(20)"),
                     col("%(x)s", "text", "text"), col('"q"', "text", f"{varchar}(20)"),
                     col("`b`", "text", f"{varchar}(20)"),
                     col("has space", "text", f"{varchar}(20)"),
                     col("j `%s`", "json", "jsonb")),
            primary_key=("id",)),
        CHILD_TABLE: SourceTable(
            name=CHILD_TABLE,
            columns=(col("id", "integer", "integer", False),
                     col("parent %id", "integer", "integer")),
            primary_key=("id",),
            foreign_keys=(ForeignKey(CHILD_FOREIGN_KEY, ("parent %id",), ODD_TABLE, ("id",)),)),
        "all_types": SourceTable(
            name="all_types",
            columns=(
                col("id", "integer", "bigint", False), col("c_int2", "integer", "smallint"),
                col("c_int4", "integer", "integer"), col("c_int8", "integer", "bigint"),
                col("c_numeric", "decimal", "numeric(10,2)"), col("c_float4", "float", "real"),
                col("c_float8", "float", "double precision"),
                col("c_bool", "boolean", "boolean"),
                col("c_text", "text", "text"), col("c_varchar", "text", f"{varchar}(20)"),
                col("c_char", "text", "character(3)"), col("c_uuid", "text", "uuid"),
                col("c_enum", "text", f"{schema}.mood"), col("c_json", "json", "json"),
                col("c_jsonb", "json", "jsonb"), col("c_bytea", "binary", "bytea"),
                col("c_date", "date", "date"),
                col("c_timestamp", "datetime", "timestamp(6) without time zone"),
                col("c_timestamptz", "datetime", "timestamp with time zone"),
                col("c_time", "time", "time without time zone"),
                col("c_timetz", "time", "time with time zone"),
                col("c_int_array", "json", "integer[]"), col("c_text_array", "json", "text[]"),
                col("c_money", "decimal", "money"), col("c_interval", "text", "interval"),
                col("c_domain", "integer", f"{schema}.positive_int"),
                col("c_inet", "text", "inet")),
            primary_key=("id",)),
    }


EXPECTED_ALL_TYPES_ROWS = [
    (1, -300, -2000000000, 9000000000000000000, 12345678.91, 1.5, 2.25, 1, "long text", "héllo",
     "ab", "123e4567-e89b-12d3-a456-426614174000", "happy", '{"b": 1,  "a": [1, 2]}',
     '{"a": [1, 2], "b": 1}', b"\x00\xff", "2024-02-29", "2024-02-29T13:14:15.123456",
     "2024-02-29T11:14:15Z", "13:14:15", "18:44:15", "[1,2,null]", '["a b","c"]', 12.34,
     "1 day 02:00:00", 7, "10.0.0.1/32"),
    # Infinite dates and timestamps have no ISO form: NULL.
    (2, None, None, None, None, None, None, 0) + (None,) * 19,
    (3,) + (None,) * 26,
]
