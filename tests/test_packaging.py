"""The project installs like a real package: a wheel built from the repository carries the spec,
its reference and the gunicorn settings, and once installed in a fresh virtualenv it serves from
any directory (`reflexdb serve`, `reflexdb worker`, gunicorn with the packaged settings)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest
import requests

from app.config import PROJECT_ROOT
from app.resources import GUNICORN_CONFIG, REFERENCE, SPEC
from tests.conftest import free_port, stop_process_group, wait_until_serving

SOURCES = {  # the file teams edit -> its place in the package
    PROJECT_ROOT / "openapi" / "openapi.yaml": SPEC,
    PROJECT_ROOT / "openapi" / "reference.html": REFERENCE,
    PROJECT_ROOT / "gunicorn.conf.py": SPEC.with_name("gunicorn_conf.py"),
}
IN_WHEEL = {"app/resources/openapi.yaml": PROJECT_ROOT / "openapi" / "openapi.yaml",
            "app/resources/reference.html": PROJECT_ROOT / "openapi" / "reference.html",
            "app/resources/gunicorn_conf.py": PROJECT_ROOT / "gunicorn.conf.py"}


def test_the_packaged_files_are_links_to_the_files_teams_edit():
    """A copy could drift from the source; a link cannot. An editor that replaced a link with a
    file, or a link to anything else, fails here."""
    for source, packaged in SOURCES.items():
        assert packaged.is_symlink(), f"{packaged} must stay a symlink to {source}"
        assert packaged.resolve() == source.resolve(), f"{packaged} points at {packaged.resolve()}"


def _repository_files() -> list[str]:
    """The files a clone of the repository would have (tracked, plus new ones not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and os.path.lexists(PROJECT_ROOT / name)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `python -m build` makes from a copy of the repository (sdist first, then the
    wheel from the unpacked sdist, as a release would): what pip installs from PyPI."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    for name in _repository_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        original = PROJECT_ROOT / name
        if original.is_symlink():
            target.symlink_to(os.readlink(original))
        else:
            shutil.copy2(original, target)
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(root / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((root / "dist").glob("reflexdb-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_the_files_teams_edit(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, source in IN_WHEEL.items():
            assert archive.read(name) == source.read_bytes(), f"{name} differs from {source}"
        migrations = sorted(p.name for p in (PROJECT_ROOT / "app/storage/migrations").glob("[0-9]*.py"))
        assert migrations and all(f"app/storage/migrations/{m}" in names for m in migrations)
    assert not any(name.startswith("tests/") for name in names), "the tests are not part of the package"


def _environment(extra: dict | None = None) -> dict:
    """A user's environment: no setting of the project, nothing pointing at this checkout."""
    checkout_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != checkout_bin)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REFLEXDB_", "DATABASE_URL", "PYTHON", "VIRTUAL_ENV", "XDG_RUNTIME_DIR"))}
    return env | {"PATH": path} | (extra or {})


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed (its dependencies from the package index,
    through pip's cache); returns its bin directory."""
    target = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(target, with_pip=True)
    bin_dir = target / "bin"
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
                          env=_environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A directory that has nothing to do with the checkout, where the user runs the commands."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def _start(argv, cwd, env, log_path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def test_the_package_is_imported_from_the_virtualenv(installed, elsewhere):
    where = subprocess.run([str(installed / "python"), "-c", "import app, app.resources as r; "
                            "print(app.__file__); print(r.SPEC.is_symlink())"],
                           cwd=elsewhere, env=_environment(), capture_output=True, text=True, check=True)
    module, linked = where.stdout.splitlines()
    assert Path(module).is_relative_to(installed.parent) and linked == "False", where.stdout


def test_reflexdb_serve_runs_from_another_directory_on_the_embedded_default(installed, elsewhere):
    port = free_port()
    env = _environment()
    log_path = elsewhere.parent / "serve.log"
    proc = _start([str(installed / "reflexdb"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                  elsewhere, env, log_path)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(f"{base}/health", proc, log_path, timeout=90)
        created = subprocess.run([str(installed / "reflexdb"), "customers", "create", "--name", "Packaged"],
                                 cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)["key"]

        health = requests.get(f"{base}/health", timeout=10)
        assert (health.status_code, health.json()) == (200, {"status": "ok", "storage": "sqlite"})
        listed = requests.get(f"{base}/connections", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert (listed.status_code, listed.json()) == (200, [])
        spec = requests.get(f"{base}/openapi.yaml", timeout=10)
        assert spec.status_code == 200 and spec.content == (PROJECT_ROOT / "openapi" / "openapi.yaml").read_bytes()
        assert requests.get(f"{base}/reference", timeout=10).status_code == 200
        # The embedded store is where the user ran the command, not in the package.
        assert (elsewhere / "data" / "reflexdb.sqlite3").is_file()
        assert "started the engine worker" in log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, log_path.read_text()[-3000:]
    finally:
        stop_process_group(proc)


def test_gunicorn_with_the_packaged_settings_and_reflexdb_worker(installed, elsewhere):
    env = _environment()
    migrated = subprocess.run([str(installed / "reflexdb"), "migrate"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr

    port = free_port()
    api_log, worker_log = elsewhere.parent / "gunicorn.log", elsewhere.parent / "worker.log"
    api = _start([str(installed / "gunicorn"), "--config", GUNICORN_CONFIG, "--bind", f"127.0.0.1:{port}",
                  "--workers", "1"], elsewhere, env, api_log)
    worker = _start([str(installed / "reflexdb"), "worker"], elsewhere, env, worker_log)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/v1/health", api, api_log, timeout=90)
        spec = requests.get(f"http://127.0.0.1:{port}/v1/openapi.yaml", timeout=10)
        assert spec.content == (PROJECT_ROOT / "openapi" / "openapi.yaml").read_bytes()

        deadline = time.monotonic() + 60
        while "engine worker started" not in worker_log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, worker_log.read_text()[-3000:]
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker_log.read_text()[-3000:]
        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) == 0, api_log.read_text()[-3000:]
    finally:
        stop_process_group(worker)
        stop_process_group(api)
