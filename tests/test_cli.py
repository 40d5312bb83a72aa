"""The `reflexdb` console script, run as users and scripts run it."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from tests.conftest import PG_URL, _ensure_pg_database

REFLEXDB = shutil.which("reflexdb", path=os.path.dirname(sys.executable)) or "reflexdb"


def run(args, env_extra, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLEXDB_", "DATABASE_URL"))}
    env.update(env_extra)
    result = subprocess.run([REFLEXDB, *args], env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def embedded(tmp_path):
    return {"REFLEXDB_DATA_DIR": str(tmp_path / "data")}


class TestEmbedded:
    def test_migrate_is_idempotent_and_creates_a_private_key_file(self, embedded, tmp_path):
        first = run(["migrate"], embedded)
        assert "applied 3 migration(s): 0001_initial, 0002_query_keys_and_schema_config, 0003_lifecycle" in first.stderr
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


class TestPostgres:
    def test_requires_encryption_keys(self):
        _ensure_pg_database()
        result = run(["migrate"], {"DATABASE_URL": PG_URL}, check=False)
        assert result.returncode != 0
        assert "REFLEXDB_SECRET_KEYS" in result.stderr

    def test_create_customer_and_rotate_keys(self, stack, client, connection):
        # The app fixture's store is the same PostgreSQL database the CLI is pointed at.
        old_key = stack.settings.secret_keys[0]
        env = {"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": old_key}
        payload = json.loads(run(["customers", "create", "--name", "CLI Corp"], env).stdout)
        assert payload["key"].startswith("rmk_")
        new_key = Fernet.generate_key().decode()
        rotated = run(["secrets", "rotate"], {**env, "REFLEXDB_SECRET_KEYS": f"{new_key},{old_key}"})
        assert "re-encrypted 1 password(s)" in rotated.stderr
        from app.storage.models import Connection
        from app.storage.secrets import SecretBox
        from tests.conftest import stored

        token = stored(Connection, connection["id"]).password_encrypted
        assert SecretBox([new_key]).decrypt(token).startswith("pw-")


def test_thread_pool_size_is_applied(tmp_path):
    """REFLEXDB_THREADS reaches the pool Connexion runs Flask on (it has no setting of its own)."""
    from app import create_app
    from app.config import Settings

    app = create_app(Settings.from_env(environ={"REFLEXDB_THREADS": "3"}, data_dir=tmp_path))
    assert app._middleware_app.asgi_app.executor._max_workers == 3
