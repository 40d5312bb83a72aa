"""The store is unreachable: every request answers 503 `unavailable` with Retry-After, one log
line each and no traceback, and the service recovers by itself when the store is back.

Real PostgreSQL, no mocks: a stack pointed at a port where nothing listens, and a stack that
reaches the test database through a TCP relay the test cuts and restores.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading

import pytest
from cryptography.fernet import Fernet
from peewee import OperationalError, SqliteDatabase

from app import create_app
from app.config import Settings
from app.storage.database import db, store_unavailable
from tests.conftest import PG_TEST_DB, Client, connection_payload, free_port, make_customer

UNAVAILABLE = {"error": "unavailable",
               "message": "the control plane's store does not answer; retry in a few seconds"}


class Relay:
    """Forwards a local port to PostgreSQL. `cut()` drops every connection and stops listening
    (the store is gone); `restore()` listens again on the same port."""

    def __init__(self, target=("127.0.0.1", 5432)):
        self.target = target
        self.port = free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def other_store(stack, tmp_path):
    """Builds apps on another store URL; puts the test stack's store back afterwards."""
    made = []

    def make(database_url: str):
        settings = Settings.from_env(environ={}, database_url=database_url, data_dir=tmp_path,
                                     secret_keys=stack.settings.secret_keys or (Fernet.generate_key().decode(),),
                                     validate_responses=True)
        app = create_app(settings)   # points the models at the new store
        made.append(db.obj)
        return app

    yield make
    for database in made:
        database.close_all()
    stack.activate()


def store_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


class TestStoreNeverReachable:
    def test_every_request_is_503_with_one_log_line(self, other_store, caplog):
        port = free_port()   # nothing listens there
        app = other_store(f"postgresql://postgres@127.0.0.1:{port}/{PG_TEST_DB}")
        client = Client(app, "rmk_abcdefghijkl.0123456789abcdef0123456789abcdef")
        requests = [("GET", "/health", None, None), ("GET", "/connections", None, "default"),
                    ("POST", "/connections", connection_payload(), "default")]
        for method, path, body, key in requests:
            caplog.clear()
            with caplog.at_level(logging.INFO):
                response = client.request(method, path, json_body=body, key=key)
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["retry-after"] == "2"
            assert response.headers["content-type"] == "application/json"
            assert response.json() == UNAVAILABLE
            logged = store_warnings(caplog)
            assert logged, "nothing logged"
            assert len(logged) == 1, [r.getMessage() for r in logged]
            assert logged[0].exc_info is None and "Traceback" not in caplog.text
            assert logged[0].getMessage() == (
                f"store unavailable, {method} /v1{path} answered 503: connection to server at "
                f'"127.0.0.1", port {port} failed: Connection refused Is the server running on that '
                f"host and accepting TCP/IP connections?")

    def test_what_needs_no_store_is_still_answered(self, other_store):
        app = other_store(f"postgresql://postgres@127.0.0.1:{free_port()}/{PG_TEST_DB}")
        client = Client(app, None)
        response = client.get("/connections/")
        assert (response.status_code, response.json()) == (
            404, {"error": "not_found", "message": "no such resource: paths do not end with a slash"})
        assert client.get("/connections").status_code == 401
        assert client.get("/openapi.json").status_code == 200


def fill_pool(count: int) -> None:
    """Leave `count` idle connections in the pool (connections belong to threads)."""
    barrier = threading.Barrier(count)

    def use_one():
        with db.connection_context():
            db.execute_sql("SELECT 1")
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=use_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class TestStoreGoesAwayAndComesBack:
    def test_503_while_down_then_served_again(self, other_store, caplog):
        relay = Relay()
        relay.restore()
        try:
            app = other_store(f"postgresql://postgres@127.0.0.1:{relay.port}/{PG_TEST_DB}")
            client = Client(app, make_customer()[1])
            created = client.post("/connections", connection_payload())
            assert created.status_code == 201, created.text
            assert client.get("/health").status_code == 200

            fill_pool(4)
            relay.cut()   # the pooled connections die with it
            with caplog.at_level(logging.INFO):
                response = client.get("/connections")
            assert response.status_code == 503
            assert response.json() == UNAVAILABLE
            assert response.headers["retry-after"] == "2"
            assert len(store_warnings(caplog)) == 1 and "Traceback" not in caplog.text
            health = client.get("/health", key=None)
            assert (health.status_code, health.json()) == (503, UNAVAILABLE)

            relay.restore()
            # The pool checks a connection before lending it: the dead ones are dropped.
            assert client.get("/health", key=None).json() == {"status": "ok", "storage": "postgresql"}
            listed = client.get("/connections")
            assert listed.status_code == 200
            assert [c["id"] for c in listed.json()] == [created.json()["id"]]
        finally:
            relay.cut()


class TestWhatCountsAsUnavailable:
    """Only errors a retry may cure are a 503; SQLite raises OperationalError for bugs too."""

    def test_sqlite_locked_is_unavailable_a_syntax_error_is_not(self, tmp_path):
        path = str(tmp_path / "store.sqlite3")
        store = SqliteDatabase(path, timeout=0)
        with pytest.raises(OperationalError) as bug:
            store.execute_sql("SELEKT 1")
        assert not store_unavailable(bug.value)

        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(OperationalError) as locked:
                store.execute_sql("SELECT * FROM sqlite_master")
            assert str(locked.value) == "database is locked"
            assert store_unavailable(locked.value)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
            store.close()
