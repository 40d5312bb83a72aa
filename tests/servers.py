"""The source database servers the tests use: one place, each setting overridable.

| variable                      | default     |
|-------------------------------|-------------|
| REFLEXDB_TEST_MYSQL_HOST      | 127.0.0.1   |
| REFLEXDB_TEST_MYSQL_PORT      | 3306        |
| REFLEXDB_TEST_MYSQL_USER      | root        |
| REFLEXDB_TEST_MYSQL_PASSWORD  | (empty)     |
| REFLEXDB_TEST_PG_HOST         | 127.0.0.1   |
| REFLEXDB_TEST_PG_PORT         | 5432        |
| REFLEXDB_TEST_PG_USER         | postgres    |
| REFLEXDB_TEST_PG_PASSWORD     | (empty)     |
| REFLEXDB_TEST_PG_SOURCE_DB    | test        |

The users must be able to create databases/schemas and users/roles. PostgreSQL
source schemas live in the database REFLEXDB_TEST_PG_SOURCE_DB; the control
plane's own store database is REFLEXDB_TEST_PG_DB (see tests/conftest.py).
The environment is read on first use, not at import.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import psycopg2
import psycopg2.errors
import pymysql
import pytest

from app.sources import SourceCredentials


@dataclass(frozen=True)
class Server:
    """A database server the tests administer; `database` is PostgreSQL's source database."""

    backend: str          # as SourceCredentials spells it: "mysql" or "postgres"
    product: str          # as the adapters' messages name it: "MySQL" or "PostgreSQL"
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect_args(self) -> dict:
        """Keyword arguments for pymysql.connect (MariaDB) or psycopg2.connect (PostgreSQL)."""
        args = {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password}
        if self.database is not None:
            args["dbname"] = self.database
        return args

    def credentials(self, schema: str) -> SourceCredentials:
        """Credentials of this server's administrator for one source schema."""
        return SourceCredentials(backend=self.backend, host=self.host, port=self.port,
                                 user=self.user, password=self.password, schema=schema,
                                 database=self.database)


def _setting(name: str, default: str) -> str:
    return os.environ.get(f"REFLEXDB_TEST_{name}", default)


def _port(name: str, default: int) -> int:
    value = _setting(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"REFLEXDB_TEST_{name} must be a TCP port number, not {value!r}")
    return int(value)


@cache
def mariadb() -> Server:
    """The MariaDB (MySQL) server holding the MySQL source schemas."""
    return Server(backend="mysql", product="MySQL",
                  host=_setting("MYSQL_HOST", "127.0.0.1"), port=_port("MYSQL_PORT", 3306),
                  user=_setting("MYSQL_USER", "root"), password=_setting("MYSQL_PASSWORD", ""))


@cache
def postgres() -> Server:
    """The PostgreSQL server and database holding the PostgreSQL source schemas."""
    return Server(backend="postgres", product="PostgreSQL",
                  host=_setting("PG_HOST", "127.0.0.1"), port=_port("PG_PORT", 5432),
                  user=_setting("PG_USER", "postgres"), password=_setting("PG_PASSWORD", ""),
                  database=_setting("PG_SOURCE_DB", "test"))


def connect_mariadb(**extra) -> pymysql.connections.Connection:
    """An autocommit admin connection to MariaDB; fails the test, naming the server, if down."""
    server = mariadb()
    try:
        return pymysql.connect(**server.connect_args(), autocommit=True, connect_timeout=5,
                               **extra)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at {server.address} (user {server.user!r}) is unreachable: {exc}",
                    pytrace=False)


def connect_postgres():
    """An autocommit admin connection to the PostgreSQL source database, created if missing."""
    server = postgres()
    try:
        try:
            connection = psycopg2.connect(**server.connect_args(), connect_timeout=5)
        except psycopg2.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
            _create_postgres_database(server)
            connection = psycopg2.connect(**server.connect_args(), connect_timeout=5)
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL at {server.address} (user {server.user!r}, database "
                    f"{server.database!r}) is unreachable: {exc}", pytrace=False)
    connection.autocommit = True
    return connection


def _create_postgres_database(server: Server) -> None:
    admin = psycopg2.connect(**{**server.connect_args(), "dbname": "postgres"},
                             connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{server.database}"')
    except psycopg2.errors.DuplicateDatabase:
        pass   # another test run made it in the meantime
    finally:
        admin.close()


# -- servers with replication on (change data capture tests) ---------------------------
#
# The shared servers above have binary logging off (MariaDB) and wal_level=replica
# (PostgreSQL). The CDC tests start their own from a temporary data dir on a free port:
# a MariaDB with --log-bin (ROW, FULL row image and metadata) and a PostgreSQL with
# wal_level=logical (initdb and pg_ctl run as the `postgres` user when the tests run as root).

POSTGRES_BIN = os.environ.get("REFLEXDB_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until(check, what: str, log_file: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as exc:   # noqa: BLE001 - anything means "not up yet"
            if time.monotonic() > deadline:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise RuntimeError(f"{what} did not start: {exc}\n{tail}") from None
            time.sleep(0.2)


class LocalServer:
    """A database server the tests run from a temporary data dir; `server` reaches it."""

    def __init__(self, server: Server, root: Path):
        self.server = server
        self.root = root

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its data dir."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class BinlogMariaDB(LocalServer):
    """MariaDB with binary logging in ROW format (log_bin, FULL row image and metadata)."""

    def __init__(self, root: Path, port: int | None = None):
        super().__init__(Server(backend="mysql", product="MySQL", host="127.0.0.1",
                                port=port or _free_port(), user="root", password=""), root)
        self.process: subprocess.Popen | None = None
        data = root / "data"
        if not data.exists():
            # --no-defaults: the system's my.cnf would force user=mysql.
            install = subprocess.run(
                [shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db",
                 "--no-defaults", f"--user={_user_name()}", f"--datadir={data}",
                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                capture_output=True, text=True, timeout=120)
            if install.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed: {install.stderr[-2000:]}")

    def start(self) -> None:
        root = self.root
        log_file = root / "error.log"
        command = [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults",
            f"--datadir={root / 'data'}", f"--port={self.server.port}",
            f"--socket={root / 'mysqld.sock'}", "--bind-address=127.0.0.1",
            f"--log-bin={root / 'binlog'}", "--binlog-format=ROW", "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL", "--server-id=1", "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
            "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
            f"--log-error={log_file}", f"--pid-file={root / 'mysqld.pid'}"]
        if os.geteuid() == 0:
            command.insert(2, "--user=root")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)

        def ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}")
            pymysql.connect(**self.server.connect_args(), connect_timeout=2).close()

        _wait_until(ping, f"MariaDB on port {self.server.port}", log_file)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()   # SIGTERM: a clean shutdown
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class LogicalPostgres(LocalServer):
    """PostgreSQL with wal_level=logical."""

    def __init__(self, root: Path, port: int | None = None):
        super().__init__(Server(backend="postgres", product="PostgreSQL", host="127.0.0.1",
                                port=port or _free_port(), user="postgres", password="",
                                database="postgres"), root)
        self.data = root / "data"
        if not self.data.exists():
            if os.geteuid() == 0:
                shutil.chown(root, "postgres")
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        command = [f"{POSTGRES_BIN}/{program}", *args]
        if os.geteuid() == 0:   # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")

    def start(self) -> None:
        options = (f"-p {self.server.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   f"-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 "
                   f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   f"-c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

        def ping():
            psycopg2.connect(**self.server.connect_args(), connect_timeout=2).close()

        _wait_until(ping, f"PostgreSQL on port {self.server.port}", self.root / "server.log")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")


def _user_name() -> str:
    """The name of the user running the tests."""
    return pwd.getpwuid(os.geteuid()).pw_name


def temporary_root(prefix: str) -> Path:
    """A new directory under the system temp dir that the `postgres` user may enter."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root
