"""What only the MySQL/MariaDB adapter does, against a real MariaDB (shared behaviour: test_sources.py)."""

from __future__ import annotations

import dataclasses

import pytest

from app.contracts.artifact import Column, Table
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


class TestStreamedRows:
    """The adapter splits the server's row packets itself (app/sources/mysql.py,
    `_streamed_batches`): every length prefix width, NULLs and rows that span its reads decode
    as PyMySQL decodes them."""

    SIZES = (0, 1, 250, 251, 65535, 65536, 300_000, 600_001)

    @pytest.fixture
    def wide_rows(self, mariadb_credentials, mariadb_admin):
        table = f"`{mariadb_credentials.schema}`.wide_rows"
        mariadb_admin(f"CREATE TABLE {table} (id INT PRIMARY KEY, body LONGTEXT, "
                      f"raw LONGBLOB, n BIGINT UNSIGNED)")
        try:
            for number, size in enumerate(self.SIZES):
                mariadb_admin(f"INSERT INTO {table} VALUES (%s, REPEAT('é', %s), "
                              f"REPEAT(x'00ff', %s), %s)", (number, size, size, 2**64 - 1 - size))
            mariadb_admin(f"INSERT INTO {table} VALUES (100, NULL, NULL, NULL)")
            yield Table("wide_rows", (Column("id", "integer", False), Column("body", "text"),
                                      Column("raw", "binary"), Column("n", "integer")), ("id",))
        finally:
            mariadb_admin(f"DROP TABLE IF EXISTS {table}")

    def test_rows_of_every_length(self, mariadb_credentials, wide_rows):
        with open_source(mariadb_credentials) as source:
            rows = [row for batch in source.stream_rows(wide_rows, batch_size=3) for row in batch]
            assert rows == [
                *((number, "é" * size, b"\x00\xff" * size, 2**64 - 1 - size)
                  for number, size in enumerate(self.SIZES)),
                (100, None, None, None)]
            assert source._query("SELECT 42") == [(42,)]

    def test_an_error_after_some_rows(self, mariadb_credentials, wide_rows):
        failing = ("IF(`id` > 3, (SELECT 1 UNION SELECT 2), 1) = 1", [])
        with open_source(mariadb_credentials) as source:
            with pytest.raises(SourceError) as caught:
                for _ in source.stream_rows(wide_rows, where=failing, batch_size=2):
                    pass
            assert caught.value.code == "source_error"
            assert "Subquery returns more than 1 row" in caught.value.message
            assert len([row for batch in source.stream_rows(wide_rows) for row in batch]) == 9
