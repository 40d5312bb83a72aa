"""`reflexdb serve` on the embedded default: the API and an engine worker, with no other step."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from app.config import PROJECT_ROOT
from app.engine.runtime import LocalProcessRuntime
from tests.conftest import SECRETS, free_port
from tests.engine.lifecycle.conftest import FAST, wait_until


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_serve_runs_the_api_and_a_worker_and_restarts_a_dead_worker(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLEXDB_", "DATABASE_URL"))}
    env.update(FAST, REFLEXDB_DATA_DIR=str(data), REFLEXDB_ACCESS_LOG="")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}",
                                  "--workers", "1"], cwd=PROJECT_ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/v1/health"), what=f"the API: {log_path}")
        # The worker is up when its reconciler holds the lease in the embedded store.
        wait_until(lambda: _reconciler_owner(data), what="the worker's reconciler")
        api, worker = children_of(serve.pid)
        assert "gunicorn" in Path(f"/proc/{api}/cmdline").read_text()
        assert Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")[1:4] == [b"-m", b"app.cli", b"worker"]

        # A worker that dies is started again by the supervisor.
        os.kill(worker, signal.SIGKILL)
        restarted = wait_until(lambda: [p for p in children_of(serve.pid) if p not in (api, worker)],
                               what="a new worker")
        assert len(restarted) == 1 and alive(restarted[0])

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(30) == 0
        time.sleep(0.2)
        assert not alive(api) and not alive(restarted[0])
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    output = log_path.read_text()
    assert "the engine worker exited with status -9" in output


def test_a_new_user_provisions_queries_pauses_resumes_and_terminates(tmp_path, shop):
    """The README's promise: `reflexdb serve`, `reflexdb customers create` and curl, on the embedded store."""
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLEXDB_", "DATABASE_URL"))}
    env.update(FAST, REFLEXDB_DATA_DIR=str(data), REFLEXDB_ACCESS_LOG="")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}",
                                  "--workers", "1"], cwd=PROJECT_ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until(lambda: _answers(f"{api}/health"), what=f"the API: {log_path}")
        created = subprocess.run([sys.executable, "-m", "app.cli", "customers", "create", "--name", "Acme"],
                                 cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True)
        auth = {"Authorization": f"Bearer {json.loads(created.stdout)['key']}"}
        SECRETS.add(json.loads(created.stdout)["key"])

        def call(method, path, body=None):
            return requests.request(method, f"{api}{path}", json=body, headers=auth, timeout=10)

        def wait_status(database_id, *statuses):
            return wait_until(lambda: (b := call("GET", f"/databases/{database_id}").json())["status"] in statuses
                              and b, what=f"status {statuses}")

        connection = call("POST", "/connections", {
            "name": "shop", "mysqlHost": "127.0.0.1", "mysqlPort": 3306, "availableSchemas": [shop.schema],
            "mysqlUser": shop.user, "mysqlPassword": shop.password,
            "instance": {"name": "live", "mysqlDb": shop.schema}}).json()
        database_id = connection["databases"][0]["id"]
        key = call("POST", f"/databases/{database_id}/api-keys", {"name": "storefront"}).json()["key"]

        assert call("POST", f"/databases/{database_id}/provision").json() == {
            "status": "testing_connection", "desiredState": None}
        running = wait_status(database_id, "running", "failed")
        assert running["status"] == "running", running
        answer = requests.post(f"{running['endpointUrl']}/query", data="users { id name }", timeout=10,
                               headers={"Authorization": f"Bearer {key}"})
        assert answer.json() == [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Lin"}]

        assert call("POST", f"/databases/{database_id}/pause").status_code == 202
        assert wait_status(database_id, "paused")["endpointUrl"] is None
        assert call("POST", f"/databases/{database_id}/resume").status_code == 202
        resumed = wait_status(database_id, "running")
        assert requests.post(f"{resumed['endpointUrl']}/query", data="posts { id }", timeout=10,
                             headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert call("POST", f"/databases/{database_id}/terminate").status_code == 202
        assert wait_status(database_id, "terminated")["endpointUrl"] is None

        # And why, when something fails.
        call("PATCH", f"/connections/{connection['id']}", {"mysqlPassword": "wrong-Password-1"})
        SECRETS.add("wrong-Password-1")
        call("POST", f"/databases/{database_id}/provision")
        failed = wait_status(database_id, "failed")
        assert failed["lastError"].startswith("testing the connection failed: the MySQL server at "
                                              "127.0.0.1:3306 rejected user")
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        runtime = LocalProcessRuntime(data / "instances")
        for handle in runtime.list_instances():
            runtime.release(handle)
    output = log_path.read_text()
    assert not any(secret in output for secret in SECRETS)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _reconciler_owner(data: Path):
    path = data / "reflexdb.sqlite3"
    if not path.exists():
        return None
    with sqlite3.connect(path) as connection:
        try:
            row = connection.execute("SELECT owner FROM engine_leases WHERE name = 'reconciler'").fetchone()
        except sqlite3.OperationalError:
            return None
    return row and row[0]
