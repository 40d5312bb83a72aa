"""What only the PostgreSQL adapter does, against a real PostgreSQL (shared behaviour: test_sources.py)."""

from __future__ import annotations

import dataclasses

import pytest

from app.build import compile_artifact
from app.sources import SourceError, open_source
from app.sources.postgres import logical_type
from tests import servers
from tests.sources.blog import CHILD_TABLE, N_USERS, ODD_TABLE, read_all


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


def test_row_count_estimates_are_the_statistics(postgres_credentials):
    with open_source(postgres_credentials) as source:
        estimates = source.row_count_estimates()
        assert estimates["users"] == N_USERS       # analysed by the fixture
        assert estimates["offices"] is None        # never analysed
        assert source.row_count_estimate("users") == N_USERS


class TestCheckAccess:
    def test_unknown_user(self, postgres_credentials):
        # A test server that trusts every existing role can only refuse an
        # unknown one, which stands in for a wrong password.
        credentials = dataclasses.replace(postgres_credentials, user="rx_src_nobody",
                                          password="s3cret-y")
        with pytest.raises(SourceError) as caught:
            open_source(credentials)
        assert caught.value.code == "auth_failed"
        assert str(caught.value) == (
            f"the PostgreSQL server at {servers.postgres().address} rejected user "
            f"'rx_src_nobody': check the user name and password, and that the server's "
            f"pg_hba.conf lets the user connect from this service's address")
        assert "s3cret-y" not in repr(caught.value)

    def test_missing_database(self, postgres_credentials):
        credentials = dataclasses.replace(postgres_credentials, database="rx_src_no_database")
        with pytest.raises(SourceError) as caught:
            open_source(credentials)
        assert caught.value.code == "schema_missing"
        assert str(caught.value) == (f"database 'rx_src_no_database' does not exist on the "
                                     f"PostgreSQL server at {servers.postgres().address}")

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
                       f'"{schema}".comments, "{schema}".events TO "{postgres_role}"')
        credentials = dataclasses.replace(postgres_credentials, user=postgres_role)
        with open_source(credentials) as source, pytest.raises(SourceError) as caught:
            source.check_access()
        assert caught.value.code == "access_denied"
        assert str(caught.value) == (
            f"user {postgres_role!r} may not read table 'all_types', {CHILD_TABLE!r}, "
            f"{ODD_TABLE!r}, 'offices', 'regions' in schema {credentials.target!r}: grant it "
            f"SELECT on the schema's tables")

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
