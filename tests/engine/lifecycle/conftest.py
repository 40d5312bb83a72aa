"""Fixtures for the engine tests: a real MariaDB source, real worker processes, real instances.

The API runs in-process on PostgreSQL (the `stack`); workers are `python -m app.cli worker`
processes on the same store and data dir, with short intervals so each test takes seconds.
A `SourceProxy` between the engine and MariaDB can hold one connection (the build's, an
instance's first load) so a test can act while a step is in the middle of its work.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest

from app.config import PROJECT_ROOT
from app.engine.runtime import LocalProcessRuntime
from tests.conftest import PG_URL, SECRETS

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


# -- the source ----------------------------------------------------------------------

@dataclass
class Shop:
    """A MariaDB schema `rx_eng_*` (users, posts) with a read-only user of its own."""

    schema: str
    user: str
    password: str
    admin: object

    def rows(self, sql: str) -> list[dict]:
        with self.admin.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(sql.replace("{schema}", self.schema))
            return list(cursor.fetchall())

    def execute(self, sql: str) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(sql.replace("{schema}", self.schema))

    def set_password(self, password: str) -> None:
        SECRETS.add(password)
        self.execute(f"ALTER USER '{self.user}'@'%' IDENTIFIED BY '{password}'")
        self.password = password


@pytest.fixture
def shop():
    try:
        admin = pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at 127.0.0.1:3306 is unreachable: {exc}")
    name = f"rx_eng_{secrets.token_hex(4)}"
    user, password = f"{name}_r", f"Pw-{secrets.token_urlsafe(12)}"
    SECRETS.add(password)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.users (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(80))")
        cur.execute(f"CREATE TABLE {name}.posts (id INT PRIMARY KEY, author_id INT NOT NULL, title VARCHAR(80),"
                    f" FOREIGN KEY (author_id) REFERENCES {name}.users (id))")
        cur.execute(f"INSERT INTO {name}.users VALUES (1, 'Ada', 'ada@example.com'), (2, 'Lin', 'lin@example.com')")
        cur.execute(f"INSERT INTO {name}.posts VALUES (10, 1, 'Engines'), (11, 2, 'Tables'), (12, 1, 'Notes')")
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT SELECT ON {name}.* TO '{user}'@'%'")
    yield Shop(name, user, password, admin)
    with admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


class SourceProxy:
    """A TCP proxy to MariaDB that can hold chosen connections (by their order) until released.

    A held connection is accepted but not forwarded, so the client waits for the
    server's greeting (within its connect timeout) exactly as if the server were slow.
    """

    def __init__(self, upstream=("127.0.0.1", 3306)):
        self.upstream = upstream
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.holds: dict[int, threading.Event] = {}
        self.arrived: dict[int, threading.Event] = {}
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self, number: int) -> None:
        """Hold the `number`th connection (1-based, counting from now on) until `release(number)`."""
        self.holds[number] = threading.Event()
        self.arrived[number] = threading.Event()

    def release(self, number: int) -> None:
        self.holds[number].set()

    def wait_arrived(self, number: int, timeout: float = 15) -> None:
        assert self.arrived[number].wait(timeout), f"connection {number} never reached the proxy"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client, self.accepted), daemon=True).start()

    def _serve(self, client: socket.socket, number: int) -> None:
        if number in self.holds:
            self.arrived[number].set()
            self.holds[number].wait(60)
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._sockets.append(upstream)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self._closed = True
        for event in self.holds.values():
            event.set()
        self.server.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxy():
    proxy = SourceProxy()
    yield proxy
    proxy.close()


# -- workers ---------------------------------------------------------------------------

# Short intervals, so that each test takes seconds.
FAST = {
    "REFLEXDB_RECONCILE_SECONDS": "0.5",
    "REFLEXDB_ENGINE_LEASE_SECONDS": "2",
    "REFLEXDB_DEPLOY_TIMEOUT": "30",
    "REFLEXDB_SOURCE_CONNECT_TIMEOUT": "10",
    "REFLEXDB_WORKER_THREADS": "2",
}


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Workers:
    """Starts worker processes on the test stack; stops them and every instance afterwards."""

    stack: object
    tmp_path: Path
    started: list[Worker] = field(default_factory=list)

    def env(self, **overrides) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REFLEXDB_") or k.startswith("REFLEXDB_TEST")}
        env.update(FAST)
        env.update({
            "DATABASE_URL": PG_URL,
            "REFLEXDB_SECRET_KEYS": ",".join(self.stack.settings.secret_keys),
            "REFLEXDB_DATA_DIR": str(self.stack.settings.data_dir.resolve()),
            "REFLEXDB_QUEUE_NAME": self.stack.settings.queue_name,
            "REFLEXDB_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(overrides)
        return env

    def start(self, **overrides) -> Worker:
        log_path = self.tmp_path / f"worker-{len(self.started) + 1}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=PROJECT_ROOT,
                                       env=self.env(**overrides), stdout=log, stderr=subprocess.STDOUT)
        worker = Worker(process, log_path)
        self.started.append(worker)
        return worker

    def runtime(self) -> LocalProcessRuntime:
        return self.stack.environment.instance_keys

    def close(self) -> None:
        for worker in self.started:
            worker.stop()
        runtime = self.runtime()
        for handle in runtime.list_instances():
            runtime.release(handle)


@pytest.fixture
def workers(stack, tmp_path):
    pool = Workers(stack, tmp_path)
    yield pool
    pool.close()


def wait_until(predicate, timeout: float = 60, what: str = "the condition", interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
        time.sleep(interval)


# -- driving the lifecycle ---------------------------------------------------------------

@pytest.fixture
def act(client):
    """POST /databases/{id}/<action> as the test's customer, as a user would; asserts the 202."""
    def request(database_id, action, body=None):
        response = client.post(f"/databases/{database_id}/{action}", body)
        assert response.status_code == 202, response.text
        return response
    return request
