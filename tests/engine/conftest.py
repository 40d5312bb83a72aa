"""Fixtures for the instance runtime: a real MariaDB source with a password of its own."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pymysql
import pytest

from app.build import build_artifact
from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_settings import InstanceSettings, SourceSettings
from app.contracts.query_keys import make_query_key, write_keys_file
from app.engine.runtime import LocalProcessRuntime
from app.sources import SourceCredentials

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
N_ROWS = 25


@dataclass
class Source:
    """A MariaDB schema `rx_eng_*` with table `items`, readable by `user` with `password`."""

    schema: str
    user: str
    password: str
    artifact: SchemaArtifact

    def settings(self, **overrides) -> InstanceSettings:
        options = {"sync_interval_seconds": 3600, "memory_limit_mb": 512, "threads": 4}
        options.update(overrides)
        return InstanceSettings(
            database_id="-", artifact_path="-", keys_file="-",
            source=SourceSettings(backend="mysql", host=MARIADB["host"], port=MARIADB["port"],
                                  user=self.user, schema=self.schema), **options)


@pytest.fixture(scope="module")
def source():
    try:
        admin = pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5)
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB at 127.0.0.1:3306 is unreachable: {exc}")
    name = f"rx_eng_{secrets.token_hex(4)}"
    user, password = f"{name}_r", f"Pw-{secrets.token_urlsafe(16)}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.items (id INT PRIMARY KEY, label VARCHAR(40) NOT NULL)")
        cur.executemany(f"INSERT INTO {name}.items VALUES (%s, %s)",
                        [(i, f"item {i}") for i in range(1, N_ROWS + 1)])
        for host in ("localhost", "127.0.0.1"):
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT SELECT ON {name}.* TO '{user}'@'{host}'")
    credentials = SourceCredentials(backend="mysql", host=MARIADB["host"], port=MARIADB["port"],
                                    user=user, password=password, schema=name)
    artifact, _log = build_artifact(credentials)
    yield Source(name, user, password, artifact)
    with admin.cursor() as cur:
        for host in ("localhost", "127.0.0.1"):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


@pytest.fixture
def runtime(tmp_path):
    return LocalProcessRuntime(tmp_path / "instances")


@pytest.fixture
def keys(tmp_path):
    """A keys file with one key; returns (path, the key)."""
    path = str(tmp_path / "keys.json")
    secret = secrets.token_urlsafe(32)
    write_keys_file(path, secret, {"k1": None})
    return path, make_query_key(secret, "k1")


@pytest.fixture
def started(runtime):
    """Handles to stop after the test, whatever it did."""
    handles = []
    yield handles
    for handle in handles:
        runtime.stop(handle)
