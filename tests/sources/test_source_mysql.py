"""The MySQL/MariaDB adapter against a real MariaDB."""

from __future__ import annotations

import dataclasses

import pymysql.cursors
import pytest

from app.build import compile_artifact
from app.sources import (
    ForeignKey,
    SourceColumn,
    SourceCredentials,
    SourceError,
    SourceTable,
    open_source,
)
from app.sources.mysql import logical_type, quote_identifier

N_USERS, N_POSTS, N_COMMENTS = 1000, 2000, 3000


def col(name, type_, source_type, nullable=True):
    return SourceColumn(name=name, type=type_, source_type=source_type, nullable=nullable)


EXPECTED_TABLES = {
    "users": SourceTable(
        name="users",
        columns=(col("id", "integer", "int(11)", False), col("name", "text", "varchar(100)", False),
                 col("email", "text", "varchar(200)"), col("manager_id", "integer", "int(11)"),
                 col("active", "boolean", "tinyint(1)", False)),
        primary_key=("id",),
        foreign_keys=(ForeignKey("fk_users_manager", ("manager_id",), "users", ("id",)),)),
    "posts": SourceTable(
        name="posts",
        columns=(col("id", "integer", "int(11)", False), col("author_id", "integer", "int(11)", False),
                 col("title", "text", "varchar(200)", False),
                 col("published", "boolean", "tinyint(1)", False)),
        primary_key=("id",),
        foreign_keys=(ForeignKey("fk_posts_author", ("author_id",), "users", ("id",)),)),
    "comments": SourceTable(
        name="comments",
        columns=(col("id", "integer", "int(11)", False), col("post_id", "integer", "int(11)", False),
                 col("author_id", "integer", "int(11)", False), col("body", "text", "text", False)),
        primary_key=("id",),
        foreign_keys=(ForeignKey("fk_comments_author", ("author_id",), "users", ("id",)),
                      ForeignKey("fk_comments_post", ("post_id",), "posts", ("id",)))),
    "regions": SourceTable(
        name="regions",
        columns=(col("country", "text", "char(2)", False), col("code", "text", "varchar(10)", False),
                 col("name", "text", "varchar(100)", False)),
        primary_key=("country", "code")),
    "offices": SourceTable(
        name="offices",
        columns=(col("id", "integer", "int(11)", False), col("country", "text", "char(2)", False),
                 col("region_code", "text", "varchar(10)", False)),
        primary_key=("id",),
        foreign_keys=(ForeignKey("fk_offices_region", ("country", "region_code"), "regions",
                                 ("country", "code")),)),
    "events": SourceTable(
        name="events",
        columns=(col("happened_at", "datetime", "datetime", False),
                 col("kind", "text", "varchar(20)", False), col("payload", "json", "json"))),
    "odd name": SourceTable(
        name="odd name",
        columns=(col("id", "integer", "int(11)", False), col('per%cent"col', "text", "varchar(20)")),
        primary_key=("id",)),
    "all_types": SourceTable(
        name="all_types",
        columns=(
            col("id", "integer", "bigint(20)", False), col("c_tinyint", "integer", "tinyint(4)"),
            col("c_bool", "boolean", "tinyint(1)"), col("c_bit1", "boolean", "bit(1)"),
            col("c_bit8", "integer", "bit(8)"), col("c_smallint", "integer", "smallint(6)"),
            col("c_mediumint", "integer", "mediumint(9)"), col("c_int", "integer", "int(11)"),
            col("c_bigint_u", "integer", "bigint(20) unsigned"),
            col("c_year", "integer", "year(4)"), col("c_decimal", "decimal", "decimal(10,2)"),
            col("c_float", "float", "float"), col("c_double", "float", "double"),
            col("c_char", "text", "char(3)"), col("c_varchar", "text", "varchar(20)"),
            col("c_text", "text", "text"), col("c_enum", "text", "enum('a','b')"),
            col("c_set", "text", "set('x','y')"), col("c_json", "json", "json"),
            col("c_binary", "binary", "binary(4)"), col("c_varbinary", "binary", "varbinary(8)"),
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


@pytest.fixture
def source(mariadb_credentials):
    with open_source(mariadb_credentials) as opened:
        yield opened


@pytest.fixture
def compiled(source):
    return compile_artifact(source.introspect())


def read_all(source, table, **kwargs):
    return [row for batch in source.stream_rows(table, **kwargs) for row in batch]


class TestIntrospect:
    def test_whole_schema(self, source, mariadb_schema):
        schema = source.introspect()
        assert schema.backend == "mysql"
        assert schema.schema == mariadb_schema
        assert [t.name for t in schema.tables] == sorted(EXPECTED_TABLES)
        for table in schema.tables:
            assert table == EXPECTED_TABLES[table.name]

    def test_row_count_estimates(self, source):
        estimates = source.row_count_estimates()
        assert set(estimates) == set(EXPECTED_TABLES)
        assert estimates["users"] == pytest.approx(N_USERS, rel=0.5)
        assert source.row_count_estimate("users") == estimates["users"]


@pytest.mark.parametrize("data_type, column_type, expected", [
    ("tinyint", "tinyint(1)", "boolean"), ("tinyint", "tinyint(1) unsigned", "boolean"),
    ("tinyint", "tinyint(4)", "integer"), ("bit", "bit(1)", "boolean"),
    ("bit", "bit(64)", "integer"), ("year", "year(4)", "integer"),
    ("bigint", "bigint(20) unsigned", "integer"), ("decimal", "decimal(65,30)", "decimal"),
    ("double", "double", "float"), ("float", "float", "float"), ("enum", "enum('a')", "text"),
    ("set", "set('a')", "text"), ("json", "json", "json"), ("longblob", "longblob", "binary"),
    ("varbinary", "varbinary(3)", "binary"), ("geometry", "geometry", "binary"),
    ("date", "date", "date"), ("datetime", "datetime(3)", "datetime"),
    ("timestamp", "timestamp", "datetime"), ("time", "time", "time"),
    ("mediumtext", "mediumtext", "text"), ("inet6", "inet6", "text"),
    ("some_future_type", "some_future_type", "text"),
])
def test_type_mapping(data_type, column_type, expected):
    assert logical_type(data_type, column_type) == expected


def test_quote_identifier():
    assert quote_identifier("a`b") == "`a``b`"


class TestStreamRows:
    def test_every_row_in_storage_types(self, source, compiled, blog):
        assert sorted(read_all(source, compiled.table("users"))) == [
            (i, name, email, manager, 1 if active else 0)
            for i, name, email, manager, active in blog["users"]]
        assert sorted(read_all(source, compiled.table("posts"))) == [
            (i, author, title, 1 if published else 0)
            for i, author, title, published in blog["posts"]]
        assert sorted(read_all(source, compiled.table("comments"))) == blog["comments"]
        assert sorted(read_all(source, compiled.table("all_types"))) == EXPECTED_ALL_TYPES_ROWS
        assert sorted(read_all(source, compiled.table("events"))) == [
            ("2023-12-31T23:59:59", "a", '[1, "two"]'), ("2024-01-01T00:00:00", "b", None)]

    def test_batches_through_a_server_side_cursor(self, source, compiled):
        batches = source.stream_rows(compiled.table("comments"), batch_size=700)
        first = next(batches)
        assert isinstance(source._active_cursor, pymysql.cursors.SSCursor)
        sizes = [len(first)] + [len(batch) for batch in batches]
        assert sizes == [700, 700, 700, 700, 200]
        assert sum(sizes) == N_COMMENTS
        assert source._active_cursor is None

    def test_exactly_the_artifact_columns_hidden_included(self, source, compiled, blog):
        posts = compiled.table("posts")
        only = dataclasses.replace(posts, columns=(
            dataclasses.replace(posts.columns[2], hidden=False),
            dataclasses.replace(posts.columns[0], hidden=True)))
        rows = read_all(source, only)
        assert sorted(rows, key=lambda row: row[1]) == [
            (title, i) for i, _, title, _ in blog["posts"]]

    def test_where_with_parameters_and_odd_names(self, source, compiled, blog):
        assert read_all(source, compiled.table("posts"), where=("`id` <= %s", [3])) == [
            (i, author, title, 1 if published else 0)
            for i, author, title, published in blog["posts"][:3]]
        odd = compiled.table("odd name")
        assert read_all(source, odd, where=("`per%%cent\"col` LIKE %s", ["a%"])) == [(1, "a%b")]
        assert sorted(read_all(source, odd)) == [(1, "a%b"), (2, "c")]

    def test_abandoned_stream_leaves_the_source_usable(self, source, compiled):
        batches = source.stream_rows(compiled.table("comments"), batch_size=100)
        assert len(next(batches)) == 100
        batches.close()
        assert len(read_all(source, compiled.table("posts"))) == N_POSTS
        assert len(source.introspect().tables) == len(EXPECTED_TABLES)

    def test_missing_column_is_a_source_error(self, source, compiled):
        users = compiled.table("users")
        gone = dataclasses.replace(users, columns=users.columns + (
            dataclasses.replace(users.columns[0], name="no_such_column", field="x"),))
        with pytest.raises(SourceError) as caught:
            read_all(source, gone)
        assert caught.value.code == "source_error"
        assert str(caught.value) == ("column 'no_such_column' no longer exists on table 'users': "
                                     "rebuild the database")


class TestCheckAccess:
    def test_ok(self, source):
        assert source.check_access() is None

    def test_wrong_password(self, mariadb_credentials, mariadb_user):
        user, password = mariadb_user
        wrong = f"{password}-wrong"
        credentials = dataclasses.replace(mariadb_credentials, user=user, password=wrong)
        with pytest.raises(SourceError) as caught:
            open_source(credentials)
        assert caught.value.code == "auth_failed"
        assert str(caught.value) == (
            f"the MySQL server at 127.0.0.1:3306 rejected user {user!r}: check the "
            f"user name and password, and that the user may connect from this service's address")
        assert wrong not in repr(caught.value) and password not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    def test_missing_schema(self, mariadb_credentials):
        credentials = dataclasses.replace(mariadb_credentials, schema="rx_src_does_not_exist")
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "schema_missing"
        assert str(caught.value) == ("database 'rx_src_does_not_exist' does not exist on the "
                                     "MySQL server at 127.0.0.1:3306")

    def test_closed_port(self, mariadb_credentials, free_port):
        port = free_port
        credentials = dataclasses.replace(mariadb_credentials, port=port, password="s3cret-x")
        with pytest.raises(SourceError) as caught:
            open_source(credentials, connect_timeout=3)
        assert caught.value.code == "unreachable"
        assert str(caught.value).startswith(f"cannot reach the MySQL server at 127.0.0.1:{port} "
                                            f"while connecting: check the host, the port")
        assert "s3cret-x" not in str(caught.value)

    def test_user_without_grants(self, mariadb_credentials, mariadb_user):
        user, password = mariadb_user
        credentials = dataclasses.replace(mariadb_credentials, user=user, password=password)
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "access_denied"
        assert str(caught.value).startswith(
            f"user {user!r} may not read database {mariadb_credentials.schema!r} while opening "
            f"the database: grant it SELECT on the database")
        assert password not in str(caught.value)

    def test_user_missing_one_table_grant(self, mariadb_credentials, mariadb_user,
                                          mariadb_admin):
        user, password = mariadb_user
        schema = mariadb_credentials.schema
        mariadb_admin(f"GRANT SELECT ON `{schema}`.users TO %s@'%%'", (user,))
        mariadb_admin(f"GRANT INSERT ON `{schema}`.posts TO %s@'%%'", (user,))
        credentials = dataclasses.replace(mariadb_credentials, user=user, password=password)
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "access_denied"
        assert str(caught.value) == (f"user {user!r} may not read table 'posts' in database "
                                     f"{schema!r}: grant it SELECT on the database's tables")


def test_credentials_never_show_the_password():
    credentials = SourceCredentials(backend="mysql", host="h", port=1, user="u",
                                    password="hunter2", schema="s")
    assert "hunter2" not in repr(credentials)
    assert repr(credentials) == ("SourceCredentials(backend='mysql', host='h', port=1, user='u', "
                                 "schema='s', database=None)")
