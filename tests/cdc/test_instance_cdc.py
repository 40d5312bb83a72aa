"""Change data capture through a running instance: a source change shows up in /query.

Each test starts a real instance process (app.instance, LocalProcessRuntime) in binlog
(MariaDB with --log-bin) or logical (PostgreSQL with wal_level=logical) mode over a fresh
schema of tests/cdc/conftest.py, changes the source, and polls /query until the answer is
the expected one (a deadline, never a sleep taken for an assertion). `swapCount` staying 0
proves that a change arrived through the stream, not through a reload.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
import uuid

import psutil
import psycopg2
import psycopg2.errors
import pytest
import requests

from app.build.compile import compile_artifact
from app.contracts.instance_settings import InstanceSettings, SourceSettings
from app.contracts.query_keys import make_query_key, write_keys_file
from app.engine.runtime import LocalProcessRuntime
from app.sources import open_source
from app.sources.cdc import slot_name

CONFIG = {"version": 1, "tables": [
    {"name": "items", "columns": ["id", "name", "qty"], "where": "qty >= 0"},
    {"name": "notes"},
]}
ITEMS = "items { id name qty ORDER BY id }"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return LocalProcessRuntime(tmp_path_factory.mktemp("cdc-instances"))


class Instance:
    """A running instance over one Case, with a query key."""

    def __init__(self, runtime, case, tmp_path, artifact, **overrides):
        self.runtime = runtime
        self.case = case
        self.database_id = str(case.database_id)
        secret = secrets.token_urlsafe(32)
        keys_path = str(tmp_path / f"keys-{self.database_id}.json")
        write_keys_file(keys_path, secret, {"k_main": None})
        self.key = make_query_key(secret, "k_main")
        creds = case.credentials
        self.instance_id = str(uuid.uuid4())
        options = dict(sync_mode="binlog" if case.backend == "mysql" else "logical",
                       sync_interval_seconds=3600, instance_id=self.instance_id,
                       binlog_server_id=case.server_id, memory_limit_mb=512, threads=4)
        options.update(overrides)
        settings = InstanceSettings(
            database_id=self.database_id, artifact_path="-", keys_file="-",
            source=SourceSettings(backend=creds.backend, host=creds.host, port=creds.port,
                                  user=creds.user, schema=creds.schema,
                                  database=creds.database), **options)
        self.handle = runtime.start(self.database_id, settings, artifact, creds.password,
                                    keys_path)
        self.wait_health(lambda h: h.get("serving"), "the first snapshot")

    def query(self, text: str):
        response = requests.post(f"{self.handle.endpoint_url}/query", data=text.encode(),
                                 headers={"Authorization": f"Bearer {self.key}",
                                          "Content-Type": "text/plain"}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def health(self) -> dict:
        return self.runtime.health(self.handle)

    def wait_health(self, predicate, what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        health = {}
        while time.monotonic() < deadline:
            health = self.health()
            if predicate(health):
                return health
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; last health: {health}")

    def wait_answer(self, text: str, expected, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            answer = self.query(text)
            if answer == expected:
                return answer
            time.sleep(0.05)
        pytest.fail(f"the answer to {text!r} did not become {expected!r:.500}; last: "
                    f"{answer!r:.500}; health: {self.health()}")

    def stop(self):
        self.runtime.stop(self.handle)


@pytest.fixture
def start(runtime, tmp_path):
    started = []

    def start_instance(case, *, config=CONFIG, **overrides):
        with open_source(case.credentials) as source:
            artifact = compile_artifact(source.introspect(), config)
        instance = Instance(runtime, case, tmp_path, artifact, **overrides)
        started.append(instance)
        return instance

    yield start_instance
    for instance in started:
        instance.stop()


def prepare(case, rows=((1, "apple", 5, "s1"), (2, "pear", 3, "s2"))):
    """items gets a column the config hides (`secret`); notes a counter."""
    if case.backend == "mysql":
        case.execute("ALTER TABLE {s}.items ADD COLUMN secret VARCHAR(20)",
                     "ALTER TABLE {s}.notes ADD COLUMN n INT")
    else:
        case.execute("ALTER TABLE {s}.items ADD COLUMN secret varchar(20)",
                     "ALTER TABLE {s}.notes ADD COLUMN n int")
    for row in rows:
        case.execute(f"INSERT INTO {{s}}.items VALUES ({row[0]}, '{row[1]}', {row[2]}, "
                     f"'{row[3]}')")


def item(i, name, qty):
    return {"id": i, "name": name, "qty": qty}


def test_row_changes_show_up_without_reload(case, start):
    prepare(case)
    instance = start(case)
    health = instance.health()
    mode = "binlog" if case.backend == "mysql" else "logical"
    assert (health["status"], health["syncMode"], health["effectiveSyncMode"],
            health["syncNote"], health["streamStatus"], health["swapCount"]) == (
        "ok", mode, mode, None, "streaming", 0)
    assert instance.query(ITEMS) == [item(1, "apple", 5), item(2, "pear", 3)]

    case.execute("INSERT INTO {s}.items VALUES (3, 'fig', 7, 'hidden')")
    instance.wait_answer(ITEMS, [item(1, "apple", 5), item(2, "pear", 3), item(3, "fig", 7)])
    case.execute("UPDATE {s}.items SET qty = 4 WHERE id = 1")
    case.execute("UPDATE {s}.items SET id = 10 WHERE id = 2")          # key change
    case.execute("DELETE FROM {s}.items WHERE id = 3")
    instance.wait_answer(ITEMS, [item(1, "apple", 4), item(10, "pear", 3)])

    # A multi-statement transaction arrives whole; a rolled-back one never.
    case.transaction("INSERT INTO {s}.items VALUES (20, 'a', 1, 'x')",
                     "INSERT INTO {s}.items VALUES (21, 'b', 1, 'x')",
                     "UPDATE {s}.items SET name = 'apples' WHERE id = 1",
                     rollback=True)
    case.transaction("INSERT INTO {s}.items VALUES (30, 'kiwi', 2, 'x')",
                     "UPDATE {s}.items SET name = 'apples' WHERE id = 1",
                     "DELETE FROM {s}.items WHERE id = 10")
    instance.wait_answer(ITEMS, [item(1, "apples", 4), item(30, "kiwi", 2)])

    health = instance.health()
    assert health["swapCount"] == 0 and health["streamReloads"] == 0
    assert health["rowCounts"] == {"items": 2, "notes": 0}
    assert health["eventsApplied"] == 7 and health["transactionsApplied"] >= 5
    assert health["position"] and health["replicationLagMs"] is not None
    assert health["lastReloadReason"] is None


def test_where_filter_and_hidden_column(case, start):
    prepare(case)
    instance = start(case)
    case.execute("UPDATE {s}.items SET qty = -1 WHERE id = 1")          # leaves the filter
    case.execute("INSERT INTO {s}.items VALUES (5, 'neg', -3, 'x')")    # never matches
    instance.wait_answer(ITEMS, [item(2, "pear", 3)])
    case.execute("UPDATE {s}.items SET qty = 9, secret = 'changed' WHERE id = 5")   # appears
    instance.wait_answer(ITEMS, [item(2, "pear", 3), item(5, "neg", 9)])
    assert instance.health()["rowCounts"]["items"] == 2
    response = requests.post(f"{instance.handle.endpoint_url}/query", data=b"items { secret }",
                             headers={"Authorization": f"Bearer {instance.key}"}, timeout=10)
    assert response.status_code == 400 and "secret" in response.json()["message"]
    assert instance.health()["swapCount"] == 0


def test_toast_value_kept_when_update_leaves_it_out(postgres_case, start):
    case = postgres_case
    prepare(case)
    big = secrets.token_hex(20000)     # 40,000 incompressible characters: TOASTed
    case.execute("INSERT INTO {s}.notes VALUES (1, %s, 1)", params=(big,))
    instance = start(case)
    case.execute("UPDATE {s}.notes SET n = 2 WHERE id = 1")
    instance.wait_answer("notes { id body n }", [{"id": 1, "body": big, "n": 2}])
    assert instance.health()["swapCount"] == 0


def test_pause_keeps_the_position_and_resume_catches_up(case, start):
    prepare(case)
    instance = start(case)
    case.execute("INSERT INTO {s}.items VALUES (3, 'fig', 7, 'x')")
    instance.wait_answer(ITEMS, [item(1, "apple", 5), item(2, "pear", 3), item(3, "fig", 7)])
    instance.runtime.pause_replication(instance.handle)
    paused = instance.wait_health(lambda h: h["streamStatus"] == "paused", "the pause")
    case.execute("UPDATE {s}.items SET qty = 0 WHERE id = 3")
    case.execute("DELETE FROM {s}.items WHERE id = 1")
    # Paused: the frozen snapshot keeps serving and the position stays.
    assert instance.query(ITEMS) == [item(1, "apple", 5), item(2, "pear", 3), item(3, "fig", 7)]
    assert (instance.health()["position"], instance.health()["replicationPaused"]) == (
        paused["position"], True)
    instance.runtime.resume_replication(instance.handle)
    instance.wait_answer(ITEMS, [item(2, "pear", 3), item(3, "fig", 0)])
    health = instance.health()
    assert (health["swapCount"], health["streamReloads"], health["replicationPaused"]) == (
        0, 0, False)


def _lose_position(case, instance) -> str:
    """Make the instance's stream position unusable on the source; the expected reason."""
    if case.backend == "mysql":
        connection = case.connect()
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            cursor.execute("FLUSH BINARY LOGS")
            cursor.execute("SHOW MASTER STATUS")
            current = cursor.fetchone()[0]
            while True:   # a log still read by a dump thread that has not ended is kept
                cursor.execute(f"PURGE BINARY LOGS TO '{current}'")
                cursor.execute("SHOW BINARY LOGS")
                if [row[0] for row in cursor.fetchall()] == [current]:
                    break
                assert time.monotonic() < deadline, "the old binlogs were not purged"
                time.sleep(0.1)
        connection.close()
        return "PositionLost"
    slot = slot_name(instance.database_id, instance.instance_id)
    connection = case.connect()
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while True:   # the reader is closed; its walsender may take a moment to end
            try:
                cursor.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg2.errors.ObjectInUse:
                assert time.monotonic() < deadline, "the paused instance still holds its slot"
                time.sleep(0.1)
    connection.close()
    return "PositionLost"


def test_lost_position_reloads_then_streams(case, start):
    prepare(case)
    instance = start(case)
    instance.runtime.pause_replication(instance.handle)
    instance.wait_health(lambda h: h["streamStatus"] == "paused", "the pause")
    case.execute("UPDATE {s}.items SET qty = 8 WHERE id = 1")
    reason = _lose_position(case, instance)
    instance.runtime.resume_replication(instance.handle)
    instance.wait_answer(ITEMS, [item(1, "apple", 8), item(2, "pear", 3)])
    # /health follows the writer's state, written up to 0.25 s after readers see the new
    # generation: right after the answer it may still show the stream that found the
    # position lost ("streaming" at the old position, no swap yet).
    health = instance.wait_health(lambda h: h["streamStatus"] == "streaming" and h["swapCount"],
                                  "the new stream")
    assert (health["swapCount"], health["streamReloads"], health["status"]) == (1, 1, "ok")
    assert health["lastReloadReason"].startswith(f"{reason}: ")
    # And it streams again from the new start.
    case.execute("DELETE FROM {s}.items WHERE id = 2")
    instance.wait_answer(ITEMS, [item(1, "apple", 8)])
    assert instance.health()["swapCount"] == 1


def test_truncate_applies_and_alter_reloads(case, start):
    prepare(case)
    instance = start(case)
    case.execute("TRUNCATE TABLE {s}.items")
    instance.wait_answer(ITEMS, [])
    assert instance.health()["swapCount"] == 0
    # A column the artifact serves is renamed: its rows can no longer be applied, and a
    # reload cannot read it either. The instance keeps serving what it has, degraded,
    # and retries; once the column is back, the reload succeeds.
    case.execute("ALTER TABLE {s}.items RENAME COLUMN name TO title",
                 "INSERT INTO {s}.items VALUES (4, 'plum', 6, 'x')")
    down = instance.wait_health(lambda h: h["status"] == "degraded", "degraded health")
    assert down["lastReloadReason"].startswith("schema change (alter) on table items")
    assert "name" in down["lastSyncError"]
    assert instance.query(ITEMS) == []
    case.execute("ALTER TABLE {s}.items RENAME COLUMN title TO name")
    instance.wait_answer(ITEMS, [item(4, "plum", 6)])
    health = instance.wait_health(lambda h: h["streamStatus"] == "streaming" and h["swapCount"],
                                  "the new stream")
    assert (health["swapCount"], health["streamReloads"], health["status"]) == (1, 1, "ok")


def test_source_restart_mid_stream(case, start):
    prepare(case)
    instance = start(case)
    case.local.stop()
    try:
        down = instance.wait_health(lambda h: h["status"] == "degraded", "degraded health")
        assert "the change stream is interrupted" in down["lastSyncError"]
        assert instance.query(ITEMS) == [item(1, "apple", 5), item(2, "pear", 3)]
    finally:
        case.local.start()
    case.execute("UPDATE {s}.items SET name = 'back' WHERE id = 2")
    instance.wait_answer(ITEMS, [item(1, "apple", 5), item(2, "back", 3)])
    health = instance.wait_health(lambda h: h["status"] == "ok", "ok health")
    assert (health["lastSyncError"], health["swapCount"]) == (None, 0)


def test_large_transaction_arrives_whole(case, start):
    prepare(case, rows=())
    instance = start(case)
    if case.backend == "mysql":
        case.execute("INSERT INTO {s}.items (id, name, qty) "
                     "SELECT seq, CONCAT('n', seq), seq FROM seq_1_to_100000")
    else:
        case.execute("INSERT INTO {s}.items (id, name, qty) SELECT i, 'n' || i, i "
                     "FROM generate_series(1, 100000) i")
    count = "items { id ORDER BY id DESC LIMIT 1 }"
    instance.wait_answer(count, [{"id": 100000}], timeout=120)
    health = instance.health()
    # Applied in place in one write transaction (readers go on reading the state before it:
    # WAL), not reloaded.
    assert (health["rowCounts"]["items"], health["eventsApplied"], health["swapCount"],
            health["streamReloads"], health["lastReloadReason"]) == (100000, 100000, 0, 0, None)


def writer_pid(instance) -> int | None:
    """The pid of the instance's writer process (a child of its gunicorn master)."""
    for child in psutil.Process(instance.handle.pid).children():
        try:
            if child.name() == "rx-writer":
                return child.pid
        except psutil.NoSuchProcess:
            pass
    return None


def test_a_restarted_writer_resumes_the_stream_where_it_stopped(case, start):
    prepare(case)
    instance = start(case)
    case.execute("INSERT INTO {s}.items VALUES (3, 'fig', 7, 'x')")
    instance.wait_answer(ITEMS, [item(1, "apple", 5), item(2, "pear", 3), item(3, "fig", 7)])
    before = instance.wait_health(lambda h: h["eventsApplied"] == 1, "the insert applied")
    writer = writer_pid(instance)
    os.kill(writer, signal.SIGKILL)
    # Changed while no writer runs: the new one reads it from the recorded position.
    case.execute("UPDATE {s}.items SET qty = 1 WHERE id = 3")
    instance.wait_answer(ITEMS, [item(1, "apple", 5), item(2, "pear", 3), item(3, "fig", 1)])
    health = instance.wait_health(lambda h: h["eventsApplied"] == 2, "the update applied")
    assert writer_pid(instance) not in (None, writer)
    assert ({k: health[k] for k in ("status", "swapCount", "loadCount", "streamReloads",
                                    "streamStatus", "rowCounts", "generation")} ==
            {"status": "ok", "swapCount": 0, "loadCount": 1, "streamReloads": 0,
             "streamStatus": "streaming", "rowCounts": {"items": 3, "notes": 0},
             "generation": before["generation"]})
    assert health["dataVersion"] > before["dataVersion"]


def test_stopping_the_instance_drops_its_slot(postgres_case, start):
    case = postgres_case
    prepare(case)
    instance = start(case)
    slot = slot_name(instance.database_id, instance.instance_id)
    assert slots(case) == [slot]
    instance.stop()
    assert slots(case) == []


def slots(case) -> list[str]:
    connection = psycopg2.connect(**case.local.server.connect_args(), connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s "
                           "ORDER BY 1", (slot_name(case.database_id) + "%",))
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def test_a_source_without_prerequisites_polls_and_says_why(case, start):
    prepare(case)
    instance = start(case, cdc_unavailable="binlog_format is STATEMENT; set binlog_format=ROW")
    health = instance.health()
    mode = "binlog" if case.backend == "mysql" else "logical"
    assert (health["syncMode"], health["effectiveSyncMode"], health["syncNote"],
            health["streamStatus"]) == (
        mode, "poll", f"{mode} is not available, the instance polls: binlog_format is "
                      f"STATEMENT; set binlog_format=ROW", None)



def test_explicit_and_periodic_reloads_start_a_new_stream(mysql_case, start):
    case = mysql_case
    prepare(case)
    instance = start(case, full_reload_seconds=10)
    instance.runtime.reload(instance.handle)
    health = instance.wait_health(lambda h: h["swapCount"] == 1 and
                                  h["streamStatus"] == "streaming", "the explicit reload")
    assert (health["lastReloadReason"], health["streamReloads"]) == ("reload requested", 0)
    case.execute("UPDATE {s}.items SET qty = 1 WHERE id = 1")
    instance.wait_answer(ITEMS, [item(1, "apple", 1), item(2, "pear", 3)])
    health = instance.wait_health(lambda h: h["swapCount"] == 2, "the periodic reload")
    assert health["lastReloadReason"] == "periodic full reload (fullReloadSeconds=10)"
    case.execute("DELETE FROM {s}.items WHERE id = 1")
    instance.wait_answer(ITEMS, [item(2, "pear", 3)])
