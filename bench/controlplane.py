"""The control plane as the suite runs it: a fresh store, a customer, gunicorn with the project's config."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from bench.common import PG, ROOT, VENV_BIN, Process, create_pg_database, drop_pg_database, free_port

# The app's start (imports, the spec, the workers) took 5 s on an idle machine and over 40 s on a
# busy one.
START_TIMEOUT = 240.0
_shared: dict[str, tuple[ControlPlane, str]] = {}


def shared(dbname: str, work_dir: str) -> tuple[ControlPlane, str]:
    """One store and one gunicorn for the `api` and `fleet` parts of a run (each start costs seconds)."""
    if "plane" not in _shared:
        plane = ControlPlane(dbname.replace("rx_bench_data_", "rx_bench_api_"), work_dir)
        _shared["plane"] = (plane, plane.serve())
    return _shared["plane"]


def close_shared() -> None:
    if "plane" in _shared:
        plane, _ = _shared.pop("plane")
        plane.stop()
        drop_pg_database(plane.name)


class ControlPlane:
    """A store database `name`, migrated, with one customer whose key is `key`."""

    def __init__(self, name: str, work_dir: str):
        self.name = name
        self.work_dir = Path(work_dir)
        self.url = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
        self.dsn = f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={name}"
        # One key sends every request: its rate limit would answer most of them 429.
        self.env = {**os.environ, "DATABASE_URL": self.url,
                    "REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode(),
                    "REFLEXDB_DATA_DIR": str(self.work_dir / f"data-{name}"),
                    "REFLEXDB_RATE_LIMIT": "off", "REFLEXDB_ACCESS_LOG": ""}
        create_pg_database(name)
        self.cli("migrate")
        self.key = json.loads(self.cli("customers", "create", "--name", "Bench"))["key"]
        self.processes: list[Process] = []

    def cli(self, *args: str) -> str:
        return subprocess.run([str(VENV_BIN / "reflexdb"), *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def serve(self) -> str:
        """gunicorn with the project's config and default settings; returns the /v1 base URL."""
        port = free_port()
        process = Process([str(VENV_BIN / "gunicorn"), "--config", str(ROOT / "gunicorn.conf.py"),
                           "--bind", f"127.0.0.1:{port}"], env=self.env,
                          log=self.work_dir / f"gunicorn-{port}.log")
        self.processes.append(process)
        base = f"http://127.0.0.1:{port}/v1"
        process.wait_http(f"{base}/health", ok=lambda r: r.ok, timeout=START_TIMEOUT)
        return base

    def serve_bare_flask(self, worker_class: str) -> tuple[str, Process]:
        """The bare Flask baseline on the same store, `workers` = cores: its /v1 URL and its process."""
        port = free_port()
        args = [str(VENV_BIN / "gunicorn"), "--config", "/dev/null", "-w", str(os.cpu_count() or 2),
                "-k", worker_class, "--bind", f"127.0.0.1:{port}", "bench.baselines.bare_flask:app"]
        if worker_class == "gthread":
            args += ["--threads", "2"]
        process = Process(args, env={**os.environ, "BENCH_STORE_DSN": self.dsn},
                          log=self.work_dir / f"bare-flask-{worker_class}.log")
        self.processes.append(process)
        base = f"http://127.0.0.1:{port}/v1"
        process.wait_http(f"{base}/connections/00000000-0000-0000-0000-000000000000",
                          ok=lambda r: r.status_code in (401, 404), timeout=START_TIMEOUT)
        return base, process

    def create_connection(self, base: str, name: str, schemas=("s",), instance: bool = True) -> str:
        body = {"name": name, "mysqlHost": "db.example.com", "availableSchemas": list(schemas),
                "mysqlUser": "u", "mysqlPassword": "p"}
        if instance:
            body["instance"] = {"name": f"{name}-db", "mysqlDb": schemas[0]}
        response = requests.post(f"{base}/connections", headers=self.auth, json=body, timeout=10)
        response.raise_for_status()
        return response.json()["id"]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


def serve_with_engine(plane: ControlPlane) -> str:
    """`reflexdb serve`: the API plus one lifecycle-engine worker, as the README starts it."""
    port = free_port()
    process = Process([str(VENV_BIN / "reflexdb"), "serve", "--bind", f"127.0.0.1:{port}"],
                      env={**plane.env, "REFLEXDB_DATA_DIR": str(plane.work_dir / f"engine-{port}")},
                      log=plane.work_dir / f"serve-{port}.log")
    plane.processes.append(process)
    base = f"http://127.0.0.1:{port}/v1"
    process.wait_http(f"{base}/health", ok=lambda r: r.ok, timeout=START_TIMEOUT)
    return base
