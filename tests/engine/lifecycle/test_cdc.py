"""The engine's side of change data capture: prerequisites, fallback to poll, slots released.

- A `binlog` database on the shared MariaDB (binary logging off, a user without
  replication grants) still provisions: the instance polls, and lastError and the
  instance's /health name each missing prerequisite.
- A `logical` database on a PostgreSQL with wal_level=logical streams: a change shows up
  without a reload; pause-replication / resume-replication keep the position; terminate
  leaves no replication slot on the source.
"""

from __future__ import annotations

import secrets

import psycopg2
import pytest
import requests

from app.sources.cdc import slot_name
from tests import servers
from tests.engine.lifecycle.conftest import wait_until
from tests.engine.lifecycle.support import query, settled


def instance_health(database) -> dict:
    return requests.get(f"{database['endpointUrl']}/health", timeout=10).json()


def test_binlog_without_prerequisites_provisions_and_polls(client, shop, workers, act):
    workers.start()
    connection = client.post("/connections", {
        "name": "shop", "mysqlHost": "127.0.0.1", "mysqlPort": 3306,
        "availableSchemas": [shop.schema], "mysqlUser": shop.user,
        "mysqlPassword": shop.password, "syncMode": "binlog",
        "instance": {"name": "live", "mysqlDb": shop.schema}}).json()
    database = connection["databases"][0]
    assert database["syncMode"] == "binlog"

    act(database["id"], "provision")
    body = settled(client, database["id"])

    assert (body["status"], body["healthStatus"]) == ("running", "ok"), body
    note = body["lastError"]
    assert note.startswith("binlog is not available, the instance polls: binary logging is "
                           "off (log_bin=OFF) on 127.0.0.1:3306"), note
    assert "REPLICATION SLAVE" in note
    health = instance_health(body)
    assert (health["syncMode"], health["effectiveSyncMode"], health["syncNote"],
            health["streamStatus"]) == ("binlog", "poll", note, None)


@pytest.fixture(scope="module")
def logical_server():
    server = servers.LogicalPostgres(servers.temporary_root("rx_eng_logical_"))
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_shop(logical_server):
    schema = f"rx_eng_{secrets.token_hex(4)}"
    admin = psycopg2.connect(**logical_server.server.connect_args(), connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
        cursor.execute(f'CREATE TABLE "{schema}".users (id int PRIMARY KEY, name text)')
        cursor.execute(f"INSERT INTO \"{schema}\".users VALUES (1, 'Ada'), (2, 'Lin')")
    yield schema, admin
    with admin.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
    admin.close()


def slots(admin, database_id) -> list[str]:
    with admin.cursor() as cursor:
        cursor.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s",
                       (slot_name(database_id) + "%",))
        return [row[0] for row in cursor.fetchall()]


def test_logical_streams_pauses_and_terminate_drops_the_slot(client, workers, act, logical_server,
                                                              pg_shop):
    schema, admin = pg_shop
    workers.start()
    server = logical_server.server
    connection = client.post("/connections", {
        "name": "pg", "backend": "postgres", "mysqlHost": server.host, "mysqlPort": server.port,
        "availableSchemas": [schema], "mysqlUser": server.user,
        "mysqlPassword": "trust-ignores-it", "syncMode": "logical",
        "instance": {"name": "live", "mysqlDb": schema}})
    assert connection.status_code == 201, connection.text
    database = connection.json()["databases"][0]
    key = client.post(f"/databases/{database['id']}/api-keys", {"name": "app"}).json()["key"]

    act(database["id"], "provision")
    body = settled(client, database["id"])
    assert (body["status"], body["healthStatus"], body["lastError"]) == ("running", "ok", None)
    health = instance_health(body)
    assert (health["effectiveSyncMode"], health["streamStatus"]) == ("logical", "streaming")
    assert len(slots(admin, database["id"])) == 1
    # The control plane shows what the health check saw.
    sync = client.get(f"/databases/{database['id']}/instance").json()["instance"]["sync"]
    assert (sync["syncMode"], sync["effectiveSyncMode"], sync["syncNote"], sync["replicationPaused"]) == (
        "logical", "logical", None, False)
    assert sync["position"] and sync["eventsApplied"] == 0

    def answer(expected):
        return wait_until(lambda: query(body["endpointUrl"], key, "users { id name }").json()
                          == expected, 30, what=f"the answer {expected}")

    with admin.cursor() as cursor:
        cursor.execute(f"INSERT INTO \"{schema}\".users VALUES (3, 'Kim')")
    answer([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Lin"}, {"id": 3, "name": "Kim"}])

    act(database["id"], "pause-replication")
    paused = wait_until(lambda: (h := instance_health(body))["streamStatus"] == "paused" and h,
                        30, what="the pause")
    with admin.cursor() as cursor:
        cursor.execute(f"UPDATE \"{schema}\".users SET name = 'Ada L' WHERE id = 1")
    assert instance_health(body)["position"] == paused["position"]
    act(database["id"], "resume-replication")
    answer([{"id": 1, "name": "Ada L"}, {"id": 2, "name": "Lin"}, {"id": 3, "name": "Kim"}])
    assert (instance_health(body)["swapCount"], instance_health(body)["streamReloads"]) == (0, 0)

    # A redeploy (resize) swaps instances: the old one's slot goes with it.
    act(database["id"], "resize", {"instanceSize": "small"})
    body = wait_until(lambda: (b := settled(client, database["id"]))["endpointUrl"]
                      != body["endpointUrl"] and b, 60, what="the new instance")
    assert body["status"] == "running"
    # The old instance is released after the swap commits.
    [slot] = wait_until(lambda: len(found := slots(admin, database["id"])) == 1 and found, 60,
                        what="the old instance's slot to go")
    assert slot == slot_name(database["id"], _live_instance_id(database["id"]))

    act(database["id"], "terminate")
    assert settled(client, database["id"])["status"] == "terminated"
    assert slots(admin, database["id"]) == []


def _live_instance_id(database_id):
    from app.storage.database import db
    from app.storage.models import Instance
    with db.connection_context():
        return Instance.get((Instance.database == database_id) & Instance.stopped_at.is_null()).id
