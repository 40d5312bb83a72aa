"""The PostgreSQL adapter against a real PostgreSQL."""

from __future__ import annotations

import dataclasses

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
from app.sources.postgres import logical_type, quote_identifier

N_USERS, N_POSTS, N_COMMENTS = 1000, 2000, 3000


def col(name, type_, source_type, nullable=True):
    return SourceColumn(name=name, type=type_, source_type=source_type, nullable=nullable)


def expected_tables(schema: str) -> dict[str, SourceTable]:
    varchar = "character varying"
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
        "odd name": SourceTable(
            name="odd name",
            columns=(col("id", "integer", "integer", False),
                     col('per%cent"col', "text", f"{varchar}(20)")),
            primary_key=("id",)),
        "all_types": SourceTable(
            name="all_types",
            columns=(
                col("id", "integer", "bigint", False), col("c_int2", "integer", "smallint"),
                col("c_int4", "integer", "integer"), col("c_int8", "integer", "bigint"),
                col("c_numeric", "decimal", "numeric(10,2)"), col("c_float4", "float", "real"),
                col("c_float8", "float", "double precision"), col("c_bool", "boolean", "boolean"),
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


@pytest.fixture
def source(postgres_credentials):
    with open_source(postgres_credentials) as opened:
        yield opened


@pytest.fixture
def compiled(source):
    return compile_artifact(source.introspect())


def read_all(source, table, **kwargs):
    return [row for batch in source.stream_rows(table, **kwargs) for row in batch]


class TestIntrospect:
    def test_whole_schema(self, source, postgres_schema):
        schema = source.introspect()
        expected = expected_tables(postgres_schema)
        assert schema.backend == "postgres"
        assert schema.schema == postgres_schema
        assert [t.name for t in schema.tables] == sorted(expected)
        for table in schema.tables:
            assert table == expected[table.name]

    def test_row_count_estimates(self, source):
        estimates = source.row_count_estimates()
        assert set(estimates) == set(expected_tables("s"))
        assert estimates["users"] == N_USERS       # analysed by the fixture
        assert estimates["offices"] is None        # never analysed
        assert source.row_count_estimate("users") == N_USERS


@pytest.mark.parametrize("type_name, kind, category, expected", [
    ("int2", "b", "N", "integer"), ("int4", "b", "N", "integer"), ("int8", "b", "N", "integer"),
    ("numeric", "b", "N", "decimal"), ("money", "b", "N", "decimal"),
    ("float4", "b", "N", "float"), ("float8", "b", "N", "float"), ("bool", "b", "B", "boolean"),
    ("text", "b", "S", "text"), ("varchar", "b", "S", "text"), ("bpchar", "b", "S", "text"),
    ("uuid", "b", "U", "text"), ("citext", "b", "S", "text"), ("mood", "e", "E", "text"),
    ("json", "b", "U", "json"), ("jsonb", "b", "U", "json"), ("bytea", "b", "U", "binary"),
    ("date", "b", "D", "date"), ("timestamp", "b", "D", "datetime"),
    ("timestamptz", "b", "D", "datetime"), ("time", "b", "D", "time"),
    ("timetz", "b", "D", "time"), ("_int4", "b", "A", "json"), ("_text", "b", "A", "json"),
    ("interval", "b", "T", "text"), ("inet", "b", "I", "text"),
])
def test_type_mapping(type_name, kind, category, expected):
    assert logical_type(type_name, kind, category) == expected


def test_quote_identifier():
    assert quote_identifier('a"b') == '"a""b"'


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
        cursor = source._active_cursor
        assert cursor.name is not None          # a named cursor lives on the server
        assert cursor.itersize == 700
        sizes = [len(first)] + [len(batch) for batch in batches]
        assert sizes == [700, 700, 700, 700, 200]
        assert source._active_cursor is None and cursor.closed

    def test_where_with_parameters_and_odd_names(self, source, compiled, blog):
        assert read_all(source, compiled.table("posts"), where=('"id" <= %s', [3])) == [
            (i, author, title, 1 if published else 0)
            for i, author, title, published in blog["posts"][:3]]
        odd = compiled.table("odd name")
        assert read_all(source, odd, where=('"per%%cent""col" LIKE %s', ["a%"])) == [(1, "a%b")]
        assert sorted(read_all(source, odd)) == [(1, "a%b"), (2, "c")]

    def test_abandoned_stream_leaves_the_source_usable(self, source, compiled):
        batches = source.stream_rows(compiled.table("comments"), batch_size=100)
        assert len(next(batches)) == 100
        batches.close()
        assert len(read_all(source, compiled.table("posts"))) == N_POSTS

    def test_missing_table_is_a_source_error(self, source, compiled, postgres_schema):
        gone = dataclasses.replace(compiled.table("users"), name="no_such_table")
        with pytest.raises(SourceError) as caught:
            read_all(source, gone)
        assert caught.value.code == "source_error"
        assert str(caught.value) == (f"table 'no_such_table' no longer exists in schema "
                                     f"'test.{postgres_schema}': rebuild the database")


class TestCheckAccess:
    def test_ok(self, source):
        assert source.check_access() is None

    def test_unknown_user(self, postgres_credentials):
        # The test server trusts every existing role, so an unknown role stands
        # in for a wrong password.
        credentials = dataclasses.replace(postgres_credentials, user="rx_src_nobody",
                                          password="s3cret-y")
        with pytest.raises(SourceError) as caught:
            open_source(credentials)
        assert caught.value.code == "auth_failed"
        assert str(caught.value) == (
            "the PostgreSQL server at 127.0.0.1:5432 rejected user 'rx_src_nobody': check the "
            "user name and password, and that the server's pg_hba.conf lets the user connect "
            "from this service's address")
        assert "s3cret-y" not in repr(caught.value)

    def test_missing_schema(self, postgres_credentials):
        credentials = dataclasses.replace(postgres_credentials, schema="rx_src_does_not_exist")
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "schema_missing"
        assert str(caught.value) == ("schema 'rx_src_does_not_exist' does not exist in database "
                                     "'test' on the PostgreSQL server at 127.0.0.1:5432")

    def test_missing_database(self, postgres_credentials):
        credentials = dataclasses.replace(postgres_credentials, database="rx_src_no_database")
        with pytest.raises(SourceError) as caught:
            open_source(credentials)
        assert caught.value.code == "schema_missing"
        assert str(caught.value) == ("database 'rx_src_no_database' does not exist on the "
                                     "PostgreSQL server at 127.0.0.1:5432")

    def test_closed_port(self, postgres_credentials, free_port):
        credentials = dataclasses.replace(postgres_credentials, port=free_port,
                                          password="s3cret-z")
        with pytest.raises(SourceError) as caught:
            open_source(credentials, connect_timeout=3)
        assert caught.value.code == "unreachable"
        assert str(caught.value).startswith(
            f"cannot reach the PostgreSQL server at 127.0.0.1:{free_port} while connecting: "
            f"check the host, the port")
        assert "s3cret-z" not in str(caught.value)

    def test_role_without_schema_usage(self, postgres_credentials, postgres_role):
        credentials = dataclasses.replace(postgres_credentials, user=postgres_role)
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "access_denied"
        assert str(caught.value) == (
            f"user {postgres_role!r} may not use schema {credentials.target!r}: grant it USAGE "
            f"on the schema and SELECT on its tables")

    def test_role_without_table_grants(self, postgres_credentials, postgres_role,
                                       postgres_admin):
        schema = postgres_credentials.schema
        postgres_admin(f'GRANT USAGE ON SCHEMA "{schema}" TO "{postgres_role}"')
        postgres_admin(f'GRANT SELECT ON "{schema}".users, "{schema}".posts, '
                       f'"{schema}".comments TO "{postgres_role}"')
        credentials = dataclasses.replace(postgres_credentials, user=postgres_role)
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "access_denied"
        assert str(caught.value) == (
            f"user {postgres_role!r} may not read table 'all_types', 'events', 'odd name', "
            f"'offices', 'regions' in schema {credentials.target!r}: grant it SELECT on the "
            f"schema's tables")

    def test_role_reading_a_table_it_may_not(self, postgres_credentials, postgres_role,
                                             postgres_admin):
        schema = postgres_credentials.schema
        postgres_admin(f'GRANT USAGE ON SCHEMA "{schema}" TO "{postgres_role}"')
        postgres_admin(f'GRANT SELECT (id) ON "{schema}".users TO "{postgres_role}"')
        credentials = dataclasses.replace(postgres_credentials, user=postgres_role)
        with open_source(postgres_credentials) as admin_source:
            users = compile_artifact(admin_source.introspect()).table("users")
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            read_all(source, users)
        assert caught.value.code == "access_denied"
        assert str(caught.value).startswith(f"user {postgres_role!r} may not read schema "
                                            f"{credentials.target!r} while reading table 'users'")


class TestCredentials:
    def test_postgres_database_defaults_to_postgres(self):
        credentials = SourceCredentials(backend="postgres", host="h", port=5432, user="u",
                                        password="p", schema="public")
        assert credentials.postgres_database == "postgres"
        assert credentials.target == "postgres.public"

    @pytest.mark.parametrize("backend, target, database, schema", [
        ("postgres", "app.public", "app", "public"),
        ("postgres", "public", None, "public"),
        ("postgres", "app.odd.schema", "app", "odd.schema"),
        ("mysql", "shop.v2", None, "shop.v2"),
    ])
    def test_for_target(self, backend, target, database, schema):
        credentials = SourceCredentials.for_target(backend=backend, host="h", port=1, user="u",
                                                   password="p", target=target)
        assert (credentials.database, credentials.schema) == (database, schema)

    def test_rejects_unknown_backend(self):
        with pytest.raises(ValueError):
            SourceCredentials(backend="oracle", host="h", port=1, user="u", password="p",
                              schema="s")
