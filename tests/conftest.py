"""Fixtures for the control-plane tests.

Tests run against PostgreSQL (the production store); tests marked
`both_stores` also run against the embedded SQLite default. PostgreSQL must be
reachable: an unreachable server fails the run, it never skips it.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg2
import pytest
import requests
from cryptography.fernet import Fernet

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from app import create_app  # noqa: E402
from app.config import PROJECT_ROOT, Settings  # noqa: E402
from app.domain import environment  # noqa: E402
from app.domain.customers import create_customer  # noqa: E402
from app.storage.database import db, init_database, migrate  # noqa: E402
from app.storage.models import ALL_MODELS  # noqa: E402

PG_ADMIN_DSN = os.environ.get("REFLEXDB_TEST_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PG_TEST_DB = os.environ.get("REFLEXDB_TEST_PG_DB", "reflexdb_test")
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_TEST_DB}"

# Every password a test sends; no response body may ever contain one.
SECRETS: set[str] = set()
_counter = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "both_stores: run against PostgreSQL and embedded SQLite")


def pytest_generate_tests(metafunc):
    if "store" in metafunc.fixturenames:
        stores = ["postgres", "sqlite"] if metafunc.definition.get_closest_marker("both_stores") else ["postgres"]
        metafunc.parametrize("store", stores, scope="session")


def _ensure_pg_database() -> None:
    try:
        conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc}); start it (see .ci/run)",
                    pytrace=False)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_TEST_DB,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    conn.close()


class Stack:
    """One configured control plane: its app, store and services environment."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app = create_app(settings)
        self.database = db.obj
        self.environment = environment.current()
        with db.connection_context():
            migrate()

    def activate(self) -> None:
        # The models' proxy is process-global; point it at this stack's store.
        init_database(self.database)
        environment.configure(self.environment)

    def truncate(self) -> None:
        with db.connection_context():
            if self.settings.database_url and self.settings.database_url.startswith("postgres"):
                tables = ", ".join(m._meta.table_name for m in ALL_MODELS)
                db.execute_sql(f"TRUNCATE {tables} CASCADE")
            else:
                for model in reversed(ALL_MODELS):
                    model.delete().execute()


_stacks: dict[str, Stack] = {}


def _stack(store: str, tmp_root: Path) -> Stack:
    if store not in _stacks:
        if store == "postgres":
            _ensure_pg_database()
            settings = Settings.from_env(environ={}, database_url=PG_URL,
                                         secret_keys=(Fernet.generate_key().decode(),),
                                         data_dir=tmp_root / "pg-data", validate_responses=True)
        else:
            settings = Settings.from_env(environ={}, data_dir=tmp_root / "sqlite-data",
                                         validate_responses=True)
        _stacks[store] = Stack(settings)
    return _stacks[store]


@pytest.fixture
def stack(store, tmp_path_factory) -> Stack:
    current = _stack(store, tmp_path_factory.getbasetemp())
    current.activate()
    current.truncate()
    SECRETS.clear()
    return current


@pytest.fixture
def store():  # overridden by pytest_generate_tests; default for direct use
    return "postgres"


class Client:
    """The Connexion test client, checking that no response ever leaks a secret."""

    def __init__(self, app, key: str | None):
        self._client = app.test_client()
        self.key = key

    def request(self, method, path, *, json_body=None, key: str | None = "default", headers=None,
                content=None):
        headers = dict(headers or {})
        token = self.key if key == "default" else key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs = {}
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body)
            headers.setdefault("Content-Type", "application/json")
        elif content is not None:
            kwargs["content"] = content
        response = self._client.request(method, "/v1" + path, headers=headers, **kwargs)
        for secret in SECRETS:
            assert secret not in response.text, "a secret reached a response body"
        return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, json_body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def make_customer(name="Acme", plan="free", is_admin=False):
    with db.connection_context():
        customer, key = create_customer(name, plan=plan, is_admin=is_admin)
    return customer, key


@pytest.fixture
def customer(stack):
    return make_customer()


@pytest.fixture
def client(stack, customer) -> Client:
    return Client(stack.app, customer[1])


@pytest.fixture
def other_client(stack) -> Client:
    """A second, unrelated customer."""
    return Client(stack.app, make_customer("Other Corp")[1])


def connection_payload(**overrides) -> dict:
    """A valid POST /connections body with a fresh, registered password."""
    n = next(_counter)
    password = f"pw-{n}-Zq8!secret"
    SECRETS.add(password)
    body = {
        "name": f"conn-{n}",
        "mysqlHost": "db.example.com",
        "availableSchemas": ["shop", "analytics"],
        "mysqlUser": "reader",
        "mysqlPassword": password,
    }
    body.update(overrides)
    if "mysqlPassword" in overrides:
        SECRETS.add(overrides["mysqlPassword"])
    return body


@pytest.fixture
def connection(client) -> dict:
    response = client.post("/connections", connection_payload())
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def database(client, connection) -> dict:
    response = client.post("/databases", {"connectionId": connection["id"], "name": "live",
                                          "mysqlDb": "shop"})
    assert response.status_code == 201, response.text
    return response.json()


def stored(model, ident):
    """The row as stored now, read on the test's own connection."""
    with db.connection_context():
        return model.get_by_id(ident)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(stack, tmp_path):
    """The app under gunicorn (the project's config, 2 workers) on the test PostgreSQL store; yields its base URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0],
           "REFLEXDB_DB_POOL_SIZE": "16", "REFLEXDB_ACCESS_LOG": ""}
    # The log goes to a file: a pipe nobody reads would fill up and stall the server.
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(PROJECT_ROOT / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or too busy to answer in 1 s
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gunicorn did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=20)
