"""Operations that must not cost a request (docs/deploy.md, "Zero-downtime operations"): under steady
load from a few client threads, a graceful reload (HUP), a rolling restart of two servers behind the
nginx example, and a migration that adds a column while the old code serves. Every request must get
an answer that is neither a connection error nor a 5xx; each test prints its request counts."""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg2
import pytest
import requests
from cryptography.fernet import Fernet
from peewee import PostgresqlDatabase
from playhouse.migrations import Runner

from app.resources import GUNICORN_CONFIG
from app.storage.database import MIGRATIONS_DIR
from tests.conftest import (
    PG_ADMIN_DSN,
    PG_TEST_DB,
    PG_URL,
    free_port,
    make_customer,
    stop_process_group,
    wait_until_serving,
)
from tests.test_deploy_examples import _example_site, _main_conf, nginx  # noqa: F401 - nginx is a fixture

THREADS = 4
# The load stops by itself after this long or this many requests, whatever the test does.
MAX_LOAD_SECONDS = 120
MAX_LOAD_REQUESTS = 40_000
EXAMPLE_UPSTREAM = "server 127.0.0.1:8080 max_fails=3 fail_timeout=10s;"


@dataclass
class Report:
    """What the clients got: answers counted by request and status, and every failure."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {status}: {n}" for (kind, status), n in sorted(self.counts.items()))
        return f"{self.total} requests ({kinds}); {len(self.failures)} failed"


class Load:
    """A few client threads sending requests back to back, each on its own keep-alive session,
    as an application talking to the API would: reads (the connection list, health) and writes
    (new connections). Bounded in time and count."""

    EXPECTED = {"list": 200, "health": 200, "create": 201}

    def __init__(self, base_url: str, key: str, *, verify=True):
        self.base_url, self.key, self.verify = base_url, key, verify
        self.report = Report()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._names = itertools.count(1)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(THREADS)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for(self, more: int, timeout: float = 60) -> None:
        """Wait until `more` further requests have been answered (the load is really running)."""
        target, deadline = self.report.total + more, time.monotonic() + timeout
        while self.report.total < target:
            assert time.monotonic() < deadline, f"the load stalled: {self.report.summary()}"
            assert not self._stop.is_set(), "the load stopped before the test was done"
            time.sleep(0.05)

    def _run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        started = time.monotonic()
        for turn in itertools.count():
            if self._stop.is_set() or time.monotonic() - started > MAX_LOAD_SECONDS:
                break
            with self._lock:
                if self.report.total + len(self.report.failures) >= MAX_LOAD_REQUESTS:
                    break
            kind = ("create", "health", "list", "list")[turn % 4]
            try:
                if kind == "create":
                    response = session.post(f"{self.base_url}/connections", json=self._connection(), timeout=30,
                                            verify=self.verify)
                elif kind == "health":
                    response = session.get(f"{self.base_url}/health", timeout=30, verify=self.verify)
                else:
                    response = session.get(f"{self.base_url}/connections?limit=5", timeout=30, verify=self.verify)
            except requests.RequestException as exc:
                self._record(kind, None, f"{kind}: {type(exc).__name__}: {exc}")
                continue
            failed = response.status_code != self.EXPECTED[kind]
            self._record(kind, response.status_code,
                         f"{kind}: {response.status_code} {response.text[:200]}" if failed else None)
        session.close()
        self._stop.set()  # one thread at its bound stops the others: the test then sees it

    def _connection(self) -> dict:
        return {"name": f"load-{next(self._names)}", "mysqlHost": "db.example.com",
                "availableSchemas": ["shop"], "mysqlUser": "reader", "mysqlPassword": "load-Zq8!secret"}

    def _record(self, kind: str, status: int | None, failure: str | None) -> None:
        with self._lock:
            if failure is None:
                self.report.counts[(kind, status)] += 1
            else:
                self.report.failures.append(failure)


def assert_nothing_lost(report: Report, minimum: int) -> None:
    print(f"\n{report.summary()}")
    assert report.failures == [], f"{report.summary()}: {report.failures[:10]}"
    assert report.total >= minimum, report.summary()
    assert {kind for kind, _status in report.counts} == set(Load.EXPECTED), report.summary()


class Server:
    """gunicorn with the project's settings (2 workers) on a port, run from `folder`."""

    def __init__(self, folder: Path, port: int, env: dict):
        self.folder, self.port, self.env = folder, port, env
        self.access_log = folder / f"access-{port}.log"
        self.log = folder / f"gunicorn-{port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "Server":
        env = self.env | {"REFLEXDB_ACCESS_LOG": str(self.access_log)}
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG, "--bind", f"127.0.0.1:{self.port}",
                 "--workers", "2"], cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_until_serving(f"{self.url}/health", self.proc, self.log)
        return self

    def workers(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.proc.pid).children()}

    def requests_served(self) -> int:
        return len(self.access_log.read_text().splitlines()) if self.access_log.exists() else 0

    def stop(self) -> None:
        """SIGTERM, as systemd stops it: the master stops its workers gracefully."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=40) == 0, self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


def server_env(tmp_path: Path, database_url: str, key: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REFLEXDB_", "DATABASE_URL")) and k != "XDG_RUNTIME_DIR"}
    # The load is one key sending requests as fast as it can: a rate limit would answer 429s
    # that have nothing to do with what these tests measure.
    return env | {"DATABASE_URL": database_url, "REFLEXDB_SECRET_KEYS": key, "REFLEXDB_DB_POOL_SIZE": "8",
                  "REFLEXDB_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
                  "REFLEXDB_RATE_LIMIT": "off"}


def wait_for_new_workers(server: Server, old: set[int], timeout: float = 60) -> set[int]:
    """After a HUP: every old worker gone and as many new ones running."""
    deadline = time.monotonic() + timeout
    while True:
        now = server.workers()
        if not now & old and len(now) == len(old):
            return now
        assert time.monotonic() < deadline, f"the reload did not finish: {server.log.read_text()[-3000:]}"
        time.sleep(0.1)


def test_a_graceful_reload_under_load_loses_no_request(stack, tmp_path):
    _customer, key = make_customer("Reload Corp", plan="enterprise")
    server = Server(tmp_path, free_port(), server_env(tmp_path, PG_URL, stack.settings.secret_keys[0]))
    try:
        server.start()
        with Load(server.url, key) as load:
            load.wait_for(100)
            for _reload in range(2):
                old = server.workers()
                os.kill(server.proc.pid, signal.SIGHUP)
                wait_for_new_workers(server, old)
                load.wait_for(100)  # served by the new workers
        server.stop()
    finally:
        server.kill()
    assert_nothing_lost(load.report, minimum=300)


def test_a_rolling_restart_of_two_servers_behind_nginx_loses_no_request(stack, nginx, tmp_path):  # noqa: F811
    _customer, key = make_customer("Rolling Corp", plan="enterprise")
    env = server_env(tmp_path, PG_URL, stack.settings.secret_keys[0])
    servers = [Server(tmp_path, free_port(), env), Server(tmp_path, free_port(), env)]
    https_port = free_port()
    upstream = "\n    ".join(EXAMPLE_UPSTREAM.replace("127.0.0.1:8080", f"127.0.0.1:{s.port}") for s in servers)
    site = _example_site(tmp_path, **{
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;", "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{free_port()};", "listen [::]:80;": "", EXAMPLE_UPSTREAM: upstream})
    proxy = subprocess.Popen([nginx, "-c", _main_conf(tmp_path, site), "-e", str(tmp_path / "error.log"),
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        for server in servers:
            server.start()
        base = f"https://127.0.0.1:{https_port}/v1"
        _wait_https(f"{base}/health", proxy, tmp_path)
        with Load(base, key, verify=str(tmp_path / "fullchain.pem")) as load:
            load.wait_for(100)
            for server in servers:  # one after the other, as an operator would
                server.stop()
                load.wait_for(50)   # the other server answers everything meanwhile
                served = server.requests_served()
                server.start()
                # Back in rotation before the next one goes: nginx sends it traffic again
                # (after fail_timeout, if it counted the refused connections as failures).
                deadline = time.monotonic() + 30
                while server.requests_served() < served + 20:
                    assert time.monotonic() < deadline, "nginx never sent traffic to the restarted server"
                    time.sleep(0.1)
            load.wait_for(100)
    finally:
        stop_process_group(proxy)
        for server in servers:
            server.kill()
    assert_nothing_lost(load.report, minimum=300)


def _wait_https(url: str, proxy: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url, verify=str(tmp_path / "fullchain.pem"), timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert proxy.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
        time.sleep(0.2)


ADD_COLUMN = '''"""A release's additive migration: a nullable column the old code knows nothing about."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column("connections", "owner_team", CharField(max_length=64, null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("connections", "owner_team"))
'''


@pytest.fixture
def release_store(tmp_path):
    """A PostgreSQL database of its own (named after REFLEXDB_TEST_PG_DB) with this code's schema,
    and the next release's migrations: this code's, plus one adding a column."""
    name = f"{PG_TEST_DB}_release"
    admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    params = psycopg2.extensions.parse_dsn(PG_ADMIN_DSN)
    params.pop("dbname", None)
    database = PostgresqlDatabase(name, **params)
    with database.connection_context():
        Runner(database, directory=str(MIGRATIONS_DIR)).up()
    next_release = tmp_path / "next-release-migrations"
    next_release.mkdir()
    for migration in MIGRATIONS_DIR.glob("[0-9]*.py"):
        (next_release / migration.name).write_text(migration.read_text())
    (next_release / "9999_connection_owner_team.py").write_text(ADD_COLUMN)
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}", database, next_release
    finally:
        database.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_a_migration_adding_a_column_runs_while_the_old_code_serves(release_store, tmp_path):
    url, database, next_release = release_store
    env = server_env(tmp_path, url, Fernet.generate_key().decode())
    created = subprocess.run([str(Path(sys.executable).with_name("reflexdb")), "customers", "create", "--name",
                              "Release Corp", "--plan", "enterprise"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    server = Server(tmp_path, free_port(), env)
    try:
        server.start()
        with Load(server.url, key) as load:
            load.wait_for(100)
            with database.connection_context():
                applied = Runner(database, directory=str(next_release)).up()
            assert applied == ["9999_connection_owner_team"]
            load.wait_for(100)  # the old code writes and reads the table with the new column
            # Old workers started after the migration accept the store (more migrations than they know).
            old = server.workers()
            os.kill(server.proc.pid, signal.SIGHUP)
            wait_for_new_workers(server, old)
            load.wait_for(100)
        server.stop()
    finally:
        server.kill()
    assert_nothing_lost(load.report, minimum=300)
    with database.connection_context():
        rows = database.execute_sql("SELECT count(*), count(owner_team) FROM connections").fetchone()
    assert rows == (load.report.counts[("create", 201)], 0), "rows the old code wrote leave the new column empty"
