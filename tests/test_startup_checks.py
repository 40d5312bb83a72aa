"""A broken production configuration stops the start with one clear line and a non-zero exit, before
any worker serves: gunicorn with the project's settings, `reflexdb serve`, and `gunicorn wsgi:app`."""

from __future__ import annotations

import subprocess
import sys

import psycopg2
import pytest
from cryptography.fernet import Fernet

from app.config import PROJECT_ROOT
from app.resources import GUNICORN_CONFIG
from tests.conftest import PG_ADMIN_DSN, PG_TEST_DB, PG_URL, free_port
from tests.test_cli import MIGRATIONS, REFLEXDB, clean_env

KEY = Fernet.generate_key().decode()
NO_KEY = ("REFLEXDB_SECRET_KEYS must be set when DATABASE_URL names a PostgreSQL store "
          "(generate a key with: reflexdb secrets generate-key)")


def run(argv, env_extra, tmp_path, timeout=90):
    """Run a server command as an operator would; it must stop by itself."""
    env = clean_env({"HOME": str(tmp_path), "REFLEXDB_DATA_DIR": str(tmp_path / "data"),
                     "REFLEXDB_ACCESS_LOG": "", **env_extra})
    env.pop("XDG_RUNTIME_DIR", None)
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def gunicorn(config=GUNICORN_CONFIG):
    return [sys.executable, "-m", "gunicorn", "--config", config, "--bind", f"127.0.0.1:{free_port()}",
            "--workers", "1"]


def serve():
    return [REFLEXDB, "serve", "--bind", f"127.0.0.1:{free_port()}", "--workers", "1"]


def is_log_line(text: str) -> bool:
    """gunicorn's own log lines: JSON with the project's settings (app/logs.py), `[date] [pid] ...` without."""
    return text.startswith("[") or (text.startswith("{") and '"level"' in text)


def assert_refused(result, code: int, line: str) -> None:
    """Exit status `code`, and `line` the only thing said besides gunicorn's own log lines:
    no traceback, no worker booted."""
    output = (result.stdout + result.stderr).splitlines()
    ours = [text for text in output if not is_log_line(text)]
    assert (result.returncode, ours) == (code, [f"reflexdb: {line}"]), result.stdout + result.stderr
    assert not any("Booting worker" in text for text in output), result.stderr


@pytest.fixture
def unmigrated_pg_url():
    """An empty PostgreSQL database of this run (named after REFLEXDB_TEST_PG_DB)."""
    name = f"{PG_TEST_DB}_startup"
    conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture
def broken_specs(tmp_path) -> dict:
    """Specs that cannot serve, each with the reason the refusal gives."""
    source = (PROJECT_ROOT / "openapi" / "openapi.yaml").read_text()
    assert "operationId: get_health\n" in source
    cases = {
        "not_yaml.yaml": ("openapi: 3.0.3\ninfo: [\n",
                          "not valid YAML: expected the node content, but found '<stream end>' (line 3, column 1)"),
        "not_openapi.yaml": ("openapi: 3.0.3\ninfo: {title: Broken}\npaths: {}\n",
                             "InvalidSpecification: 'version' is a required property"),
        "no_handler.yaml": (source.replace("operationId: get_health\n", "operationId: get_pulse\n"),
                            "ResolverError: module 'app.api.handlers' has no attribute 'get_pulse'"),
    }
    specs = {}
    for name, (text, reason) in cases.items():
        (tmp_path / name).write_text(text)
        specs[tmp_path / name] = reason
    return specs


class TestGunicornWithTheProjectSettings:
    @pytest.mark.parametrize("config", [GUNICORN_CONFIG, str(PROJECT_ROOT / "gunicorn.conf.py")],
                             ids=["installed", "checkout"])
    def test_no_encryption_key_with_postgresql(self, config, tmp_path):
        assert_refused(run(gunicorn(config), {"DATABASE_URL": PG_URL}, tmp_path), 1, NO_KEY)

    def test_unreachable_store(self, tmp_path):
        port = free_port()  # nothing listens there
        result = run(gunicorn(), {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
                                  "REFLEXDB_SECRET_KEYS": KEY}, tmp_path)
        assert_refused(result, 1, f'cannot reach the store: connection to server at "127.0.0.1", '
                                  f"port {port} failed: Connection refused")

    def test_migrations_not_applied(self, unmigrated_pg_url, tmp_path):
        result = run(gunicorn(), {"DATABASE_URL": unmigrated_pg_url, "REFLEXDB_SECRET_KEYS": KEY}, tmp_path)
        assert_refused(result, 1, f"the store lacks {len(MIGRATIONS)} migration(s) "
                                  f"({', '.join(MIGRATIONS)}): run `reflexdb migrate` first")

    def test_embedded_store_not_made_yet(self, tmp_path):
        assert_refused(run(gunicorn(), {}, tmp_path), 1, f"there is no store at {tmp_path}/data/reflexdb.sqlite3 "
                                                         "yet: run `reflexdb migrate` first")

    def test_spec_that_cannot_serve(self, stack, broken_specs, tmp_path):
        for spec, reason in broken_specs.items():
            result = run(gunicorn(), {"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0],
                                      "REFLEXDB_SPEC": str(spec)}, tmp_path)
            assert_refused(result, 1, f"cannot build the API from {spec}: {reason}")

    def test_a_relative_spec_path_is_taken_from_the_working_directory(self, stack, broken_specs, tmp_path):
        spec, reason = next(iter(broken_specs.items()))
        result = run(gunicorn(), {"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0],
                                  "REFLEXDB_SPEC": spec.name}, tmp_path)
        assert_refused(result, 1, f"cannot build the API from {spec}: {reason}")


class TestServe:
    def test_no_encryption_key_with_postgresql(self, tmp_path):
        assert_refused(run(serve(), {"DATABASE_URL": PG_URL}, tmp_path), 2, NO_KEY)

    def test_unreachable_store(self, tmp_path):
        port = free_port()
        result = run(serve(), {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
                               "REFLEXDB_SECRET_KEYS": KEY}, tmp_path)
        assert_refused(result, 1, f'the store failed: connection to server at "127.0.0.1", '
                                  f"port {port} failed: Connection refused")

    def test_spec_that_cannot_serve_is_refused_before_migrating(self, unmigrated_pg_url, broken_specs, tmp_path):
        spec, reason = list(broken_specs.items())[-1]
        result = run(serve(), {"DATABASE_URL": unmigrated_pg_url, "REFLEXDB_SECRET_KEYS": KEY,
                               "REFLEXDB_SPEC": str(spec)}, tmp_path)
        assert_refused(result, 1, f"cannot build the API from {spec}: {reason}")
        with psycopg2.connect(unmigrated_pg_url, connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            assert cur.fetchone() == (0,), "a release that cannot serve must not migrate the store"
        conn.close()


class TestGunicornWithoutTheProjectSettings:
    @pytest.mark.parametrize("worker", [[], ["-k", "uvicorn_worker.UvicornWorker"]], ids=["default", "asgi"])
    def test_a_bad_setting_is_one_line_not_a_traceback(self, worker, tmp_path):
        argv = [sys.executable, "-m", "gunicorn", "--chdir", str(PROJECT_ROOT), "--bind",
                f"127.0.0.1:{free_port()}", *worker, "wsgi:app"]
        result = run(argv, {"REFLEXDB_THREADS": "many"}, tmp_path)
        output = (result.stdout + result.stderr).splitlines()
        ours = [text for text in output if not is_log_line(text)]
        # gunicorn's master stops (exit status 4, "App failed to load") instead of retrying.
        assert (result.returncode, ours) == (4, ["reflexdb: REFLEXDB_THREADS must be an integer from 1 to 64 "
                                                 "(it is 'many')"]), result.stderr
        assert "Traceback" not in result.stderr
