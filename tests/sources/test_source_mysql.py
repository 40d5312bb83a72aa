"""What only the MySQL/MariaDB adapter does, against a real MariaDB (shared behaviour: test_sources.py)."""

from __future__ import annotations

import dataclasses

import pytest

from app.sources import SourceError, open_source
from app.sources.mysql import logical_type
from tests import servers


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


class TestCheckAccess:
    def test_wrong_password(self, mariadb_credentials, mariadb_user):
        user, password = mariadb_user
        wrong = f"{password}-wrong"
        credentials = dataclasses.replace(mariadb_credentials, user=user, password=wrong)
        with pytest.raises(SourceError) as caught:
            open_source(credentials)
        assert caught.value.code == "auth_failed"
        assert str(caught.value) == (
            f"the MySQL server at {servers.mariadb().address} rejected user {user!r}: check the "
            f"user name and password, and that the user may connect from this service's address")
        assert wrong not in repr(caught.value) and password not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

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
