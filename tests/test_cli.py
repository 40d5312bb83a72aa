"""The `reflexdb` console script (and gunicorn's start-up), run as users and scripts run them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys

import psycopg2
import pytest
from cryptography.fernet import Fernet

from app.config import PROJECT_ROOT
from app.domain import environment
from app.instance.keys import KeyStore
from app.storage.database import MIGRATIONS_DIR
from app.storage.models import Connection, Database
from app.storage.secrets import SecretBox
from tests.conftest import (
    PG_ADMIN_DSN,
    PG_TEST_DB,
    PG_URL,
    _ensure_pg_database,
    free_port,
    stop_process_group,
    stored,
    wait_until_serving,
)

REFLEXDB = shutil.which("reflexdb", path=os.path.dirname(sys.executable)) or "reflexdb"
# Every migration file, in the order `reflexdb migrate` applies them.
MIGRATIONS = sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9]*.py"))
ROTATED_COLUMNS = ("connections.password_encrypted", "databases.query_key_secret_encrypted",
                   "instances.admin_token_encrypted", "idempotency_records.response_encrypted")


def rotation_report(counts, already):
    """The line `reflexdb secrets rotate` prints for per-column counts (in ROTATED_COLUMNS order)."""
    listed = ", ".join(f"{column} {count}" for column, count in zip(ROTATED_COLUMNS, counts, strict=True))
    return f"re-encrypted {sum(counts)} secret(s) ({listed}); {already} already under the newest key\n"

# Every migration file, in the order they apply: a fresh store gets them all.
MIGRATIONS = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py"))


def clean_env(env_extra: dict) -> dict:
    """The test process's environment without any setting, plus `env_extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLEXDB_", "DATABASE_URL"))}
    env.update(env_extra)
    return env


def run(args, env_extra, check=True):
    result = subprocess.run([REFLEXDB, *args], env=clean_env(env_extra), capture_output=True,
                            text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def assert_fails_with(result, code: int, *lines: str) -> None:
    """The command exited with `code`, printed nothing on stdout and exactly `lines` on stderr."""
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr == "".join(f"reflexdb: {line}\n" for line in lines)


@pytest.fixture
def embedded(tmp_path):
    return {"REFLEXDB_DATA_DIR": str(tmp_path / "data")}


class TestEmbedded:
    def test_migrate_is_idempotent_and_creates_a_private_key_file(self, embedded, tmp_path):
        first = run(["migrate"], embedded)
        assert f"applied {len(MIGRATIONS)} migration(s): {', '.join(MIGRATIONS)}" in first.stderr
        assert first.stdout == ""
        assert "applied 0 migration(s)" in run(["migrate"], embedded).stderr
        mode = stat.S_IMODE((tmp_path / "data" / "secret.key").stat().st_mode)
        assert mode == 0o600

    def test_customers_create_prints_one_json_object(self, embedded):
        run(["migrate"], embedded)
        result = run(["customers", "create", "--name", "Acme", "--plan", "teams", "--admin"], embedded)
        payload = json.loads(result.stdout)
        assert set(payload) == {"customerId", "key"}
        assert payload["key"].startswith("rmk_")
        assert result.stdout.count("\n") == 1

    def test_bad_plan_is_refused(self, embedded):
        result = run(["customers", "create", "--name", "Acme", "--plan", "gold"], embedded, check=False)
        assert result.returncode == 2 and result.stdout == ""

    def test_a_rule_of_the_service_is_one_line(self, embedded):
        run(["migrate"], embedded)
        result = run(["customers", "create", "--name", ""], embedded, check=False)
        assert_fails_with(result, 2, "name must be 1 to 100 characters")

    def test_before_migrate_commands_say_so_and_create_nothing(self, embedded, tmp_path):
        database = tmp_path / "data" / "reflexdb.sqlite3"
        for args in (["customers", "create", "--name", "Acme"], ["secrets", "rotate"]):
            result = run(args, embedded, check=False)
            assert_fails_with(result, 1, f"there is no store at {database} yet: "
                                         "run `reflexdb migrate` first")
        # No empty database, no encryption key made for a store that does not exist.
        assert list((tmp_path / "data").iterdir()) == []

    def test_serve_runs_gunicorn_without_a_shared_control_socket(self, embedded, tmp_path):
        """`reflexdb serve` migrates and serves; gunicorn writes no ~/.gunicorn/gunicorn.ctl."""
        home = tmp_path / "home"
        home.mkdir()
        port = free_port()
        env = clean_env({**embedded, "HOME": str(home), "REFLEXDB_WORKERS": "1"})
        env.pop("XDG_RUNTIME_DIR", None)
        log_path = tmp_path / "serve.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([REFLEXDB, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_serving(f"http://127.0.0.1:{port}/v1/health", proc, log_path)
            assert list(home.iterdir()) == []
        finally:
            stop_process_group(proc)
        assert f"applied {len(MIGRATIONS)} migration(s)" in log_path.read_text()


class TestSettings:
    @pytest.mark.parametrize(("variable", "value", "accepts"), [
        ("REFLEXDB_THREADS", "many", "an integer from 1 to 64"),
        ("REFLEXDB_THREADS", "0", "an integer from 1 to 64"),
        ("REFLEXDB_DB_POOL_SIZE", "1001", "an integer from 1 to 1000"),
        ("REFLEXDB_WORKERS", "-2", "an integer from 1 to 256"),
        ("REFLEXDB_TIMEOUT", "30s", "an integer from 1 to 3600"),
        ("REFLEXDB_LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL, in any case"),
        ("REFLEXDB_REGION", "", "non-empty text of at most 64 characters"),
        ("REFLEXDB_SPEC", "/nonexistent/openapi.yaml", "the path of an existing file"),
    ])
    def test_a_bad_value_is_one_line_naming_the_variable(self, embedded, variable, value, accepts):
        result = run(["migrate"], {**embedded, variable: value}, check=False)
        assert_fails_with(result, 2, f"{variable} must be {accepts} (it is {value!r})")

    def test_every_bad_setting_gets_its_line(self, embedded):
        result = run(["migrate"], {**embedded, "REFLEXDB_THREADS": "x", "REFLEXDB_TIMEOUT": "0"},
                     check=False)
        assert_fails_with(result, 2, "REFLEXDB_THREADS must be an integer from 1 to 64 (it is 'x')",
                          "REFLEXDB_TIMEOUT must be an integer from 1 to 3600 (it is '0')")

    def test_secret_settings_are_never_echoed(self, embedded):
        result = run(["migrate"], {**embedded, "DATABASE_URL": "mysql://admin:hunter2@db/x",
                                   "REFLEXDB_SECRET_KEYS": "not-a-key-s3cr3t"}, check=False)
        assert_fails_with(
            result, 2, "DATABASE_URL must be empty or a postgresql:// or sqlite:/// URL",
            "REFLEXDB_SECRET_KEYS must be a comma-separated list of Fernet keys, newest first "
            "(generate one with: reflexdb secrets generate-key)")

    def test_good_values_are_taken_in_any_case(self, embedded):
        assert run(["migrate"], {**embedded, "REFLEXDB_LOG_LEVEL": "debug",
                                 "REFLEXDB_THREADS": " 4 "}).returncode == 0

    def test_gunicorn_refuses_a_bad_setting_in_one_line(self, embedded):
        result = subprocess.run(
            [sys.executable, "-m", "gunicorn", "--config", str(PROJECT_ROOT / "gunicorn.conf.py")],
            env=clean_env({**embedded, "REFLEXDB_WORKERS": "lots", "REFLEXDB_ACCESS_LOG": ""}),
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert_fails_with(result, 1, "REFLEXDB_WORKERS must be an integer from 1 to 256 (it is 'lots')")


class TestPostgres:
    def test_requires_encryption_keys(self):
        _ensure_pg_database()
        result = run(["migrate"], {"DATABASE_URL": PG_URL}, check=False)
        assert_fails_with(result, 2, "REFLEXDB_SECRET_KEYS must be set when DATABASE_URL names a "
                                     "PostgreSQL store (generate a key with: reflexdb secrets generate-key)")

    def test_unreachable_store_is_one_line(self, tmp_path):
        port = free_port()   # nothing listens there
        env = {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
               "REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode()}
        migrate = run(["migrate"], env, check=False)
        assert_fails_with(migrate, 1, f'the store failed: connection to server at "127.0.0.1", '
                                      f"port {port} failed: Connection refused")
        create = run(["customers", "create", "--name", "Acme"], env, check=False)
        assert_fails_with(create, 1, f'cannot reach the store: connection to server at "127.0.0.1", '
                                     f"port {port} failed: Connection refused")

    def test_customers_create_before_migrate_says_so(self, unmigrated_pg_url):
        env = {"DATABASE_URL": unmigrated_pg_url, "REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode()}
        result = run(["customers", "create", "--name", "Acme"], env, check=False)
        assert_fails_with(result, 1, f"the store lacks {len(MIGRATIONS)} migration(s) "
                                     f"({', '.join(MIGRATIONS)}): run `reflexdb migrate` first")

    def test_create_customer(self, stack):
        env = {"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0]}
        payload = json.loads(run(["customers", "create", "--name", "CLI Corp"], env).stdout)
        assert payload["key"].startswith("rmk_")


@pytest.fixture
def unmigrated_pg_url():
    """An empty PostgreSQL database of this test run (the name derives from REFLEXDB_TEST_PG_DB)."""
    name = f"{PG_TEST_DB}_unmigrated"
    conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class TestRotateSecrets:
    """`reflexdb secrets rotate`, then the old key dropped: every secret must still be readable."""

    def rotate(self, stack, tmp_path, keys, check=True):
        env = {"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": ",".join(keys),
               "REFLEXDB_DATA_DIR": str(tmp_path / "cli-data")}
        return run(["secrets", "rotate"], env, check=check)

    def test_rotate_then_drop_the_old_key(self, stack, client, connection, database, tmp_path):
        old_key, new_key = stack.settings.secret_keys[0], Fernet.generate_key().decode()
        keys_path = str(stack.environment.instance_keys.keys_path(database["id"]))
        # Sent with an Idempotency-Key: its stored answer (which holds the key) is a secret too.
        retry = {"Idempotency-Key": "before"}
        first = client.post(f"/databases/{database['id']}/api-keys", {"name": "before"}, headers=retry).json()
        password = SecretBox([old_key]).decrypt(
            stored(Connection, connection["id"]).password_encrypted)

        rotated = self.rotate(stack, tmp_path, [new_key, old_key])
        assert rotated.stderr == rotation_report((1, 1, 0, 1), 0)
        again = self.rotate(stack, tmp_path, [new_key, old_key])
        assert again.stderr == rotation_report((0, 0, 0, 0), 3)

        # The old key is gone: the service now runs with the new one only.
        environment.configure(dataclasses.replace(stack.environment,
                                                  secret_box=SecretBox([new_key])))
        assert SecretBox([new_key]).decrypt(
            stored(Connection, connection["id"]).password_encrypted) == password
        # Resending the stored password changes nothing (not even updatedAt): it was decrypted
        # with the new key and compared.
        version = stored(Connection, connection["id"]).credentials_version
        same = client.patch(f"/connections/{connection['id']}", {"mysqlPassword": password})
        assert (same.status_code, same.json()) == (200, connection)
        assert stored(Connection, connection["id"]).credentials_version == version
        # The stored answer is replayed, read with the new key.
        replayed = client.post(f"/databases/{database['id']}/api-keys", {"name": "before"}, headers=retry)
        assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.json() == first
        # A new query key is minted with the stored secret; the old key still verifies.
        second = client.post(f"/databases/{database['id']}/api-keys", {"name": "after"})
        assert second.status_code == 201, second.text
        store = KeyStore(keys_path, recheck_seconds=0)
        assert store.verify(first["key"]) and store.verify(second.json()["key"])
        assert not store.verify(first["key"][:-1] + ("A" if first["key"][-1] != "A" else "B"))

    def test_a_secret_no_key_opens_stops_everything(self, stack, client, connection, database,
                                                    tmp_path):
        client.post(f"/databases/{database['id']}/api-keys", {"name": "k"})
        before = (stored(Connection, connection["id"]).password_encrypted,
                  stored(Database, database["id"]).query_key_secret_encrypted)

        result = self.rotate(stack, tmp_path, [Fernet.generate_key().decode()], check=False)

        assert_fails_with(result, 2, f"connections.password_encrypted of row {connection['id']} "
                                     "cannot be decrypted with any configured key; "
                                     "nothing was re-encrypted")
        assert (stored(Connection, connection["id"]).password_encrypted,
                stored(Database, database["id"]).query_key_secret_encrypted) == before


def test_thread_pool_size_is_applied(tmp_path):
    """REFLEXDB_THREADS reaches the pool Connexion runs Flask on (it has no setting of its own).

    This test guards Connexion's private `_middleware_app`, which app/__init__.py relies on:
    setup.cfg pins connexion to the minor version it passes on (>=3.3,<3.4)."""
    from app import create_app
    from app.config import Settings

    app = create_app(Settings.from_env(environ={"REFLEXDB_THREADS": "3"}, data_dir=tmp_path))
    assert app._middleware_app.asgi_app.executor._max_workers == 3
