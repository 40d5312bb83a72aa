"""What every source adapter does the same way, run against a real MariaDB and PostgreSQL.

Backend-specific behaviour (type mapping, grants, each server's own errors) is
in test_source_mysql.py and test_source_postgres.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from app.build import compile_artifact
from app.contracts.sql import quote_identifier
from app.sources import SourceCredentials, SourceError, mysql, open_source, postgres
from tests.sources.blog import N_COMMENTS, N_POSTS, N_USERS, read_all


@pytest.fixture
def compiled(source):
    return compile_artifact(source.introspect())


def storage_rows(blog_rows, table):
    """The blog rows of `table` as the adapters return them (booleans as 0/1)."""
    return [tuple(int(value) if isinstance(value, bool) else value for value in row)
            for row in blog_rows[table]]


class TestIntrospect:
    def test_whole_schema(self, source, backend):
        schema = source.introspect()
        assert (schema.backend, schema.schema) == (backend.name, backend.credentials.schema)
        assert [t.name for t in schema.tables] == sorted(backend.expected_tables)
        for table in schema.tables:
            assert table == backend.expected_tables[table.name]

    def test_row_count_estimates(self, source, backend):
        estimates = source.row_count_estimates()
        assert set(estimates) == set(backend.expected_tables)
        assert estimates["users"] == pytest.approx(N_USERS, rel=0.5)   # analysed by the fixture
        assert source.row_count_estimate("users") == estimates["users"]


@pytest.mark.parametrize("name", ["plain", 'a"b', "a`b", "100%", "%s", "%%", "%(x)s", "a b",
                                  '`"%s"`'])
@pytest.mark.parametrize("dialect, adapter_quote", [("mysql", mysql.quote_identifier),
                                                    ("postgres", postgres.quote_identifier)])
def test_one_quoting_per_dialect(name, dialect, adapter_quote):
    # The adapters and the load-time filters put identifiers in the same statements.
    assert adapter_quote(name) == quote_identifier(name, dialect)
    # %-formatting (what both drivers do when given parameters) gives back the name.
    quoted = adapter_quote(name) % ()
    closing = quoted[-1]
    assert quoted[0] == closing
    assert quoted[1:-1].replace(closing * 2, closing) == name


def test_sqlite_identifiers_keep_their_percent_signs():
    # SQLite takes `?` parameters: nothing undoes a doubled `%` there.
    assert quote_identifier('a%"b', "sqlite") == '"a%""b"'


class TestStreamRows:
    def test_every_row_in_storage_types(self, source, compiled, backend, blog_rows):
        for table in ("users", "posts", "comments"):
            assert sorted(read_all(source, compiled.table(table))) == storage_rows(blog_rows,
                                                                                     table)
        assert (sorted(read_all(source, compiled.table("all_types")))
                == backend.expected_all_types_rows)
        assert sorted(read_all(source, compiled.table("events"))) == [
            ("2023-12-31T23:59:59", "a", '[1, "two"]'), ("2024-01-01T00:00:00", "b", None)]

    def test_batches_through_a_server_side_cursor(self, source, compiled, backend):
        batches = source.stream_rows(compiled.table("comments"), batch_size=700)
        first = next(batches)
        cursor = source._active_cursor
        assert backend.is_server_side(cursor, 700)
        sizes = [len(first)] + [len(batch) for batch in batches]
        assert sizes == [700, 700, 700, 700, 200]
        assert sum(sizes) == N_COMMENTS
        assert source._active_cursor is None

    def test_exactly_the_artifact_columns_hidden_included(self, source, compiled, blog_rows):
        posts = compiled.table("posts")
        only = dataclasses.replace(posts, columns=(
            dataclasses.replace(posts.columns[2], hidden=False),
            dataclasses.replace(posts.columns[0], hidden=True)))
        rows = read_all(source, only)
        assert sorted(rows, key=lambda row: row[1]) == [
            (title, i) for i, _, title, _ in blog_rows["posts"]]

    def test_where_with_parameters(self, source, compiled, backend, blog_rows):
        where = (f"{backend.quote('id')} <= %s", [3])
        assert read_all(source, compiled.table("posts"), where=where) == storage_rows(
            blog_rows, "posts")[:3]

    def test_where_without_parameters(self, source, compiled, backend, blog_rows):
        where = (f"{backend.quote('email')} IS NULL AND {backend.quote('id')} <= 20", [])
        assert sorted(read_all(source, compiled.table("users"), where=where)) == [
            row for row in storage_rows(blog_rows, "users") if row[0] <= 20 and row[2] is None]

    def test_abandoned_stream_leaves_the_source_usable(self, source, compiled, backend):
        batches = source.stream_rows(compiled.table("comments"), batch_size=100)
        assert len(next(batches)) == 100
        batches.close()
        assert source._active_cursor is None
        assert len(read_all(source, compiled.table("posts"))) == N_POSTS
        assert len(source.introspect().tables) == len(backend.expected_tables)

    def test_missing_column_is_a_source_error(self, source, compiled):
        users = compiled.table("users")
        gone = dataclasses.replace(users, columns=users.columns + (
            dataclasses.replace(users.columns[0], name="no_such_column", field="x"),))
        with pytest.raises(SourceError) as caught:
            read_all(source, gone)
        assert caught.value.code == "source_error"
        assert str(caught.value) == ("column 'no_such_column' no longer exists on table 'users': "
                                     "rebuild the database")

    def test_missing_table_is_a_source_error(self, source, compiled, backend):
        gone = dataclasses.replace(compiled.table("users"), name="no_such_table")
        with pytest.raises(SourceError) as caught:
            read_all(source, gone)
        assert caught.value.code == "source_error"
        where = {"mysql": "database", "postgres": "schema"}[backend.name]
        assert str(caught.value) == (f"table 'no_such_table' no longer exists in {where} "
                                     f"{backend.credentials.target!r}: rebuild the database")


class TestCheckAccess:
    def test_ok(self, source):
        assert source.check_access() is None

    def test_missing_schema(self, backend):
        credentials = dataclasses.replace(backend.credentials, schema="rx_src_does_not_exist")
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "schema_missing"
        server = backend.server
        assert str(caught.value) == {
            "mysql": f"database 'rx_src_does_not_exist' does not exist on the MySQL server at "
                     f"{server.address}",
            "postgres": f"schema 'rx_src_does_not_exist' does not exist in database "
                        f"{server.database!r} on the PostgreSQL server at {server.address}",
        }[backend.name]

    def test_closed_port(self, backend, free_port):
        credentials = dataclasses.replace(backend.credentials, host="127.0.0.1", port=free_port,
                                          password="s3cret-x")
        with pytest.raises(SourceError) as caught:
            open_source(credentials, connect_timeout=3)
        assert caught.value.code == "unreachable"
        assert str(caught.value).startswith(
            f"cannot reach the {backend.server.product} server at 127.0.0.1:{free_port} while "
            f"connecting: check the host, the port")
        assert "s3cret-x" not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


class TestCredentials:
    @pytest.mark.parametrize("backend_name", ["mysql", "postgres"])
    def test_never_show_the_password(self, backend_name):
        credentials = SourceCredentials(backend=backend_name, host="h", port=1, user="u",
                                        password="hunter2", schema="s")
        assert "hunter2" not in repr(credentials)
        assert repr(credentials) == (f"SourceCredentials(backend={backend_name!r}, host='h', "
                                     f"port=1, user='u', schema='s', database=None)")

    def test_postgres_database_defaults_to_postgres(self):
        credentials = SourceCredentials(backend="postgres", host="h", port=5432, user="u",
                                        password="p", schema="public")
        assert credentials.postgres_database == "postgres"
        assert credentials.target == "postgres.public"

    @pytest.mark.parametrize("backend_name, target, database, schema", [
        ("postgres", "app.public", "app", "public"),
        ("postgres", "public", None, "public"),
        ("postgres", "app.odd.schema", "app", "odd.schema"),
        ("mysql", "shop.v2", None, "shop.v2"),
    ])
    def test_for_target(self, backend_name, target, database, schema):
        credentials = SourceCredentials.for_target(backend=backend_name, host="h", port=1,
                                                   user="u", password="p", target=target)
        assert (credentials.database, credentials.schema) == (database, schema)

    def test_rejects_unknown_backend(self):
        with pytest.raises(ValueError):
            SourceCredentials(backend="oracle", host="h", port=1, user="u", password="p",
                              schema="s")
