"""Provision for real: a MariaDB schema becomes a running instance that answers queries.

And each way `testing_connection` can fail, with the message a user acts on.
"""

from __future__ import annotations

import re
import socket

from app.storage.models import Build, Connection, Database
from tests.conftest import stored
from tests.engine.lifecycle.conftest import wait_until
from tests.engine.lifecycle.support import (
    create_database,
    database_body,
    instance_rows,
    query,
    settled,
)


def test_provision_serves_the_source_data(client, stack, shop, workers, act):
    workers.start()
    database = create_database(client, shop)
    key = client.post(f"/databases/{database['id']}/api-keys", {"name": "storefront"}).json()["key"]

    assert act(database["id"], "provision").status_code == 202
    body = settled(client, database["id"])

    assert body["status"] == "running", body
    assert body["lastError"] is None and body["healthStatus"] == "ok"
    endpoint = body["endpointUrl"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", endpoint)
    # The same data as read from MariaDB itself.
    users = shop.rows("SELECT id, name, email FROM {schema}.users ORDER BY id")
    posts = shop.rows("SELECT id, title, author_id FROM {schema}.posts ORDER BY id")
    answer = query(endpoint, key, "users { id name email }")
    assert answer.status_code == 200, answer.text
    assert answer.json() == users
    nested = query(endpoint, key, "posts { id title author { id } }").json()
    assert nested == [{"id": p["id"], "title": p["title"], "author": {"id": p["author_id"]}} for p in posts]

    # What the store records: one build with its timed log, one live instance, what was deployed.
    row = stored(Database, database["id"])
    [build] = Build.select().where(Build.database == database["id"])
    assert build.status == "succeeded" and build.artifact["schema"] == shop.schema
    assert build.started_at <= build.finished_at
    lines = build.log.splitlines()
    assert re.fullmatch(r"\[\s*\d+\.\d{3}s\]\s+\d+\.\d{3}s  no schema config: .*", lines[0]), lines[0]
    assert any("introspecting tables, columns and keys" in line for line in lines)
    assert re.fullmatch(r"\[\s*\d+\.\d{3}s\]\s+total \d+\.\d{3} s", lines[-1]), lines[-1]
    [instance] = instance_rows(database["id"])
    assert instance.stopped_at is None and instance.build_id == build.id
    assert instance.endpoint_url == endpoint
    assert "admin_token" not in instance.handle and stack.environment.secret_box.decrypt(
        instance.admin_token_encrypted)
    assert row.deployed_build_id == build.id
    assert row.deployed_credentials_version == stored(Connection, database["connectionId"]).credentials_version
    assert row.deployed_config == {"instance_size": "nano", "sync_mode": "poll", "sync_interval": 30,
                                   "log_level": "info", "safety_net": True}
    assert (row.operation, row.operation_params, row.lease_owner, row.attempts) == (None, None, None, 0)

    # What the user sees: the instance with the health the worker collects, the build and its log.
    view = wait_until(lambda: (v := client.get(f"/databases/{database['id']}/instance").json())["instance"]
                      ["lastHealthCheck"] and v, what="a health check")
    assert view["instance"]["endpointUrl"] == endpoint and view["instance"]["buildId"] == str(build.id)
    assert view["instance"]["healthStatus"] == "ok" and view["instance"]["rowCounts"] == {"users": 2, "posts": 3}
    assert view["instance"]["swapCount"] == 0 and view["instance"]["snapshotAgeMs"] >= 0
    assert view["deployedInstanceConfig"] == {"instanceSize": "nano", "taskCpu": 256, "taskMemoryMb": 512,
                                              "syncMode": "poll", "syncInterval": 30, "logLevel": "info",
                                              "safetyNet": True}
    assert (view["hasPendingChanges"], view["credentialsPending"]) == (False, False)
    assert view["latestBuild"]["status"] == "succeeded" and view["latestBuild"]["tables"] == ["posts", "users"]
    text = client.get(f"/databases/{database['id']}/builds/{build.id}/logs")
    assert text.status_code == 200 and text.text == build.log


def _silent_server():
    """A TCP server that accepts connections and never says a word (a stalled source)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestTestingConnectionFailures:
    """Each failure class ends `failed` with its own message; nothing is built or started."""

    def _provision_fails(self, client, act, connection_overrides, mysql_db=None, shop=None):
        body = database_body(shop, **connection_overrides)
        if mysql_db is not None:
            body["availableSchemas"] = [mysql_db]
            body["instance"]["mysqlDb"] = mysql_db
        conn = client.post("/connections", body).json()
        database = conn["databases"][0]
        assert act(database["id"], "provision").status_code == 202
        result = settled(client, database["id"])
        assert result["status"] == "failed", result
        assert result["endpointUrl"] is None
        assert Build.select().where(Build.database == database["id"]).count() == 0
        assert instance_rows(database["id"]) == []
        return result["lastError"]

    def test_wrong_password(self, client, shop, workers, act):
        workers.start()
        message = self._provision_fails(client, act, {"mysqlPassword": "not-the-password"}, shop=shop)
        assert message == (f"testing the connection failed: the MySQL server at 127.0.0.1:3306 rejected user "
                           f"'{shop.user}': check the user name and password, and that the user may connect "
                           f"from this service's address")

    def test_host_unreachable(self, client, shop, workers, act):
        workers.start()
        port = _closed_port()
        message = self._provision_fails(client, act, {"mysqlPort": port}, shop=shop)
        assert message.startswith(f"testing the connection failed: cannot reach the MySQL server at "
                                  f"127.0.0.1:{port} while connecting: check the host, the port and that the "
                                  f"server accepts connections from this service ("), message
        assert "Connection refused" in message

    def test_unknown_schema(self, client, shop, workers, act):
        workers.start()
        # A user that may read every schema named rx_eng_*: a missing one is reported as missing.
        shop.execute(f"GRANT SELECT ON `rx\\_eng\\_%`.* TO '{shop.user}'@'%'")
        missing = f"{shop.schema}_gone"
        message = self._provision_fails(client, act, {}, mysql_db=missing, shop=shop)
        assert message == (f"testing the connection failed: database '{missing}' does not exist on the "
                           f"MySQL server at 127.0.0.1:3306")

    def test_missing_privilege(self, client, shop, workers, act):
        workers.start()
        shop.execute(f"REVOKE SELECT ON {{schema}}.* FROM '{shop.user}'@'%'")
        message = self._provision_fails(client, act, {}, shop=shop)
        assert message.startswith(f"testing the connection failed: user '{shop.user}' may not read database "
                                  f"'{shop.schema}' while opening the database: grant it SELECT on the "
                                  f"database ("), message

    def test_timeout(self, client, shop, workers, act):
        # The whole test is bounded by 2 x REFLEXDB_SOURCE_CONNECT_TIMEOUT + 1 s (a server may
        # accept the connection and then say nothing, which the driver would wait for forever).
        workers.start(REFLEXDB_SOURCE_CONNECT_TIMEOUT="1")
        server = _silent_server()
        port = server.getsockname()[1]
        try:
            message = self._provision_fails(client, act, {"mysqlPort": port}, shop=shop)
        finally:
            server.close()
        assert message == (f"testing the connection failed: the MySQL server at 127.0.0.1:{port} did not answer "
                           f"within 3 s: check the host, the port and the firewall between this service and "
                           f"the server (the limit is REFLEXDB_SOURCE_CONNECT_TIMEOUT)")

    def test_mssql_is_not_supported_yet(self, client, workers, act):
        workers.start()
        conn = client.post("/connections", {
            "name": "warehouse", "backend": "mssql", "mysqlHost": "127.0.0.1", "availableSchemas": ["dbo"],
            "mysqlUser": "reader", "mysqlPassword": "Mssql-secret-1", "instance": {"name": "w", "mysqlDb": "dbo"},
        }).json()
        database = conn["databases"][0]
        assert act(database["id"], "provision").status_code == 202
        result = settled(client, database["id"])
        assert result["status"] == "failed"
        assert result["lastError"] == (
            "mssql sources are not supported yet: this service can serve MySQL/MariaDB and PostgreSQL "
            "schemas; the connection 'warehouse' stays registered for when mssql support arrives")
