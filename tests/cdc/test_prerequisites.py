"""Source.cdc_prerequisites: whether a source can stream changes, each missing piece named."""

from __future__ import annotations

import secrets

import pymysql
import pytest

from app.sources import SourceCredentials, open_source
from tests import servers
from tests.servers import connect_mariadb, connect_postgres


@pytest.fixture
def shared_mariadb_schema():
    name = f"rx_cdc_{secrets.token_hex(4)}"
    admin = connect_mariadb()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(f"CREATE TABLE `{name}`.t (id INT PRIMARY KEY) ENGINE=InnoDB")
    yield servers.mariadb().credentials(name)
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{name}`")
    admin.close()


@pytest.fixture
def shared_postgres_schema():
    name = f"rx_cdc_{secrets.token_hex(4)}"
    admin = connect_postgres()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{name}"')
        cursor.execute(f'CREATE TABLE "{name}".t (id int PRIMARY KEY)')
    yield servers.postgres().credentials(name)
    with admin.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{name}" CASCADE')
    admin.close()


def test_the_shared_mariadb_lacks_the_binlog_settings(shared_mariadb_schema):
    where = servers.mariadb().address
    with open_source(shared_mariadb_schema) as source:
        ok, reasons = source.cdc_prerequisites()
    assert not ok
    assert reasons == [
        f"binary logging is off (log_bin=OFF) on {where}: start the server with log_bin "
        f"enabled, e.g. log_bin = mysql-bin in [mysqld] of my.cnf, and restart it",
        f"binlog_format is MIXED on {where}, not ROW: run SET GLOBAL binlog_format = 'ROW' "
        f"and set binlog_format = ROW in my.cnf",
        f"binlog_row_metadata is NO_LOG on {where}, not FULL: run SET GLOBAL "
        f"binlog_row_metadata = 'FULL' and set binlog_row_metadata = FULL in my.cnf",
    ]


def test_the_shared_postgres_lacks_logical_wal(shared_postgres_schema):
    where = servers.postgres().address
    with open_source(shared_postgres_schema) as source:
        ok, reasons = source.cdc_prerequisites()
    assert (ok, reasons) == (False, [
        f"wal_level is 'replica' on {where}, not 'logical': run ALTER SYSTEM SET wal_level = "
        f"logical (or set it in postgresql.conf) and restart the server"])


def test_the_cdc_servers_have_everything(case):
    with open_source(case.credentials) as source:
        assert source.cdc_prerequisites() == (True, [])
        assert source.cdc_prerequisites(tables=["items"]) == (True, [])


def test_a_mysql_user_without_replication_grants_is_told_which(mysql_case):
    user, password = f"rx_cdc_{secrets.token_hex(4)}", f"Pw-{secrets.token_hex(8)}"
    mysql_case.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                       f"GRANT SELECT ON `{mysql_case.schema}`.* TO '{user}'@'%'",
                       "CREATE TABLE {s}.legacy (id INT PRIMARY KEY) ENGINE=MyISAM")
    try:
        server = mysql_case.local.server
        credentials = SourceCredentials(backend="mysql", host=server.host, port=server.port,
                                        user=user, password=password, schema=mysql_case.schema)
        with open_source(credentials) as source:
            ok, reasons = source.cdc_prerequisites()
            assert source.cdc_prerequisites(tables=["items"]) == (False, reasons[:2])
    finally:
        mysql_case.execute(f"DROP USER '{user}'@'%'")
    assert not ok
    assert reasons == [
        f"user {user!r} lacks the REPLICATION SLAVE privilege: "
        f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%'",
        f"user {user!r} lacks the REPLICATION CLIENT privilege: "
        f"GRANT REPLICATION CLIENT ON *.* TO '{user}'@'%'",
        f"table 'legacy' in database {mysql_case.schema!r} is not InnoDB, so no consistent "
        f"snapshot holds it: ALTER TABLE ... ENGINE = InnoDB, or use poll",
    ]
    assert all(password not in reason for reason in reasons)


def test_a_postgres_user_without_rights_is_told_which(postgres_case):
    case = postgres_case
    role = f"rx_cdc_{secrets.token_hex(4)}"
    case.execute(f'CREATE ROLE "{role}" LOGIN',
                 f'GRANT USAGE ON SCHEMA {{s}} TO "{role}"',
                 f'GRANT SELECT ON ALL TABLES IN SCHEMA {{s}} TO "{role}"',
                 "CREATE TABLE {s}.unkeyed (v int)",
                 f'ALTER TABLE {{s}}.unkeyed OWNER TO "{role}"')
    try:
        server = case.local.server
        credentials = SourceCredentials(backend="postgres", host=server.host, port=server.port,
                                        user=role, password="", schema=case.schema,
                                        database=server.database)
        with open_source(credentials) as source:
            ok, reasons = source.cdc_prerequisites()
            assert source.cdc_prerequisites(tables=["items"])[1] == reasons[:2] + [
                f"user {role!r} does not own table 'items' in schema "
                f"'postgres.{case.schema}', so it may not publish it: ALTER TABLE ... OWNER "
                f"TO \"{role}\" (or a role it belongs to)"]
    finally:
        case.execute("DROP TABLE {s}.unkeyed", f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')
    assert not ok
    assert reasons == [
        f"user {role!r} may not replicate: ALTER ROLE \"{role}\" WITH REPLICATION "
        f"(on Amazon RDS: GRANT rds_replication TO \"{role}\")",
        f"user {role!r} may not create a publication in database 'postgres': GRANT CREATE ON "
        f"DATABASE \"postgres\" TO \"{role}\"",
        f"user {role!r} does not own table 'ignored', 'items', 'notes' in schema "
        f"'postgres.{case.schema}', so it may not publish it: ALTER TABLE ... OWNER TO "
        f"\"{role}\" (or a role it belongs to)",
        f"table 'unkeyed' in schema 'postgres.{case.schema}' has no primary key and no "
        f"REPLICA IDENTITY FULL, so its updates and deletes cannot be streamed: add a primary "
        f"key or run ALTER TABLE ... REPLICA IDENTITY FULL",
    ]


def test_a_mysql_server_without_binlog_has_no_snapshot_position(shared_mariadb_schema):
    with open_source(shared_mariadb_schema) as source:
        with pytest.raises(Exception, match="binary logging is off"):
            with source.consistent_read(position=True):
                pass
        with source.consistent_read():   # without a position: as before
            assert source.read_position is None


def test_the_grant_parser_reads_mariadb_names(mysql_case):
    user = f"rx_cdc_{secrets.token_hex(4)}"
    mysql_case.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'x-Secret-1'",
                       f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'",
                       f"GRANT SELECT ON `{mysql_case.schema}`.* TO '{user}'@'%'")
    try:
        server = mysql_case.local.server
        credentials = SourceCredentials(backend="mysql", host=server.host, port=server.port,
                                        user=user, password="x-Secret-1",
                                        schema=mysql_case.schema)
        with open_source(credentials) as source:
            assert source.cdc_prerequisites() == (True, [])
    finally:
        mysql_case.execute(f"DROP USER '{user}'@'%'")
    with pytest.raises(pymysql.MySQLError):
        pymysql.connect(host=server.host, port=server.port, user=user, password="x-Secret-1")
