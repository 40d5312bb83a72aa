"""The Connections API: one class per operation, whole bodies asserted."""

from __future__ import annotations

import pytest

from app.domain import connections
from app.domain.errors import Conflict
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import Connection, Database
from tests.conftest import connection_payload, stored
from tests.support import assert_error, counted_statements, statement_kind, without_generated


def expected_connection(body: dict, customer_id, **fields) -> dict:
    """The response a connection created from `body` should have, less generated values."""
    backend = body.get("backend", "mysql")
    mode = body.get("syncMode", "poll")
    result = {
        "customerId": str(customer_id),
        "name": body["name"],
        "backend": backend,
        "mysqlHost": body["mysqlHost"],
        "mysqlPort": body.get("mysqlPort", {"mysql": 3306, "postgres": 5432, "mssql": 1433}[backend]),
        "availableSchemas": body["availableSchemas"],
        "mysqlUser": body["mysqlUser"],
        "allowedSyncModes": ["poll"] if mode == "poll" else ["poll", mode],
        "minSyncInterval": body.get("syncInterval", 30),
    }
    result.update(fields)
    return result


@pytest.mark.both_stores
class TestCreateConnection:
    def test_creates_with_defaults(self, client, customer):
        body = connection_payload()
        response = client.post("/connections", body)
        assert response.status_code == 201
        created = response.json()
        assert response.headers["location"] == f"/v1/connections/{created['id']}"
        assert without_generated(created) == expected_connection(body, customer[0].id)
        assert "mysqlPassword" not in created
        assert created["updatedAt"] == created["createdAt"]   # one timestamp per write

    def test_password_is_encrypted_at_rest(self, client, stack):
        body = connection_payload()
        created = client.post("/connections", body).json()
        row = stored(Connection, created["id"])
        assert body["mysqlPassword"] not in row.password_encrypted
        assert stack.environment.secret_box.decrypt(row.password_encrypted) == body["mysqlPassword"]

    @pytest.mark.parametrize("backend,port,mode", [("postgres", 5432, "logical"), ("mssql", 1433, "cdc"),
                                                    ("mysql", 3306, "binlog")])
    def test_backend_default_port_and_cdc_mode(self, client, customer, backend, port, mode):
        body = connection_payload(backend=backend, syncMode=mode, syncInterval=60)
        created = client.post("/connections", body).json()
        assert without_generated(created) == expected_connection(body, customer[0].id, mysqlPort=port)
        assert created["allowedSyncModes"] == ["poll", mode]

    def test_cdc_mode_of_another_backend_is_rejected(self, client):
        response = client.post("/connections", connection_payload(backend="postgres", syncMode="binlog"))
        assert_error(response, 400, "invalid_request", "syncMode", "logical")

    def test_with_instance_creates_both(self, client, customer):
        body = connection_payload(instance={"name": "first", "mysqlDb": "analytics", "instanceSize": "small"})
        response = client.post("/connections", body)
        assert response.status_code == 201, response.text
        created = response.json()
        [database] = created.pop("databases")
        assert created.pop("databaseCount") == 1
        assert without_generated(created) == expected_connection(body, customer[0].id)
        assert created["updatedAt"] == created["createdAt"] and database["updatedAt"] == database["createdAt"]
        assert without_generated(database) == {
            "customerId": str(customer[0].id), "connectionId": created["id"], "name": "first",
            "mysqlDb": "analytics", "syncMode": "poll", "syncInterval": 30, "instanceSize": "small",
            "taskCpu": 512, "taskMemoryMb": 1024, "logLevel": "info", "status": "registered",
            "desiredState": None, "lastError": None, "endpointUrl": None, "healthStatus": None,
            "binlogServerId": None, "buildComputeOverride": None, "reflexdbCustomDomain": None,
            "pauseSchedule": None, "tags": [], "region": "local",
        }

    def test_with_invalid_instance_creates_neither(self, client):
        body = connection_payload(instance={"name": "first", "mysqlDb": "not-listed"})
        assert_error(client.post("/connections", body), 400, "invalid_request", "instance.mysqlDb")
        assert client.get("/connections").json() == []

    def test_instance_failing_in_the_store_rolls_back_the_connection(self, client, connection, monkeypatch):
        from app.domain import databases

        def explode(*args, **kwargs):
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(databases.Database, "create", explode)
        body = connection_payload(instance={"name": "first", "mysqlDb": "shop"})
        assert_error(client.post("/connections", body), 500, "internal_error", "request id")
        assert [c["name"] for c in client.get("/connections").json()] == [connection["name"]]

    def test_name_taken(self, client, connection):
        response = client.post("/connections", connection_payload(name=connection["name"]))
        assert_error(response, 409, "name_taken", connection["name"])

    def test_name_free_after_delete(self, client, connection):
        assert client.delete(f"/connections/{connection['id']}").status_code == 204
        assert client.post("/connections", connection_payload(name=connection["name"])).status_code == 201

    def test_name_race_is_name_taken(self, client, connection, monkeypatch):
        """A rival that commits the name between the check and the insert: the unique index decides."""
        monkeypatch.setattr(connections, "_ensure_name_free", lambda *args: None)
        response = client.post("/connections", connection_payload(name=connection["name"]))
        assert_error(response, 409, "name_taken", connection["name"])
        assert [c["id"] for c in client.get("/connections").json()] == [connection["id"]]

    @pytest.mark.parametrize("missing", ["name", "mysqlHost", "availableSchemas", "mysqlUser", "mysqlPassword"])
    def test_required_fields(self, client, missing):
        body = connection_payload()
        del body[missing]
        assert_error(client.post("/connections", body), 400, "invalid_request", missing, "required")


class TestListConnections:
    def test_lists_only_own_live_connections_oldest_first(self, client, other_client):
        first = client.post("/connections", connection_payload()).json()
        second = client.post("/connections", connection_payload()).json()
        other_client.post("/connections", connection_payload())
        deleted = client.post("/connections", connection_payload()).json()
        client.delete(f"/connections/{deleted['id']}")
        assert client.get("/connections").json() == [first, second]


@pytest.mark.both_stores
class TestGetConnection:
    def test_includes_live_databases(self, client, connection, database):
        gone = client.post("/databases", {"connectionId": connection["id"], "name": "gone",
                                          "mysqlDb": "shop"}).json()
        client.delete(f"/databases/{gone['id']}")
        response = client.get(f"/connections/{connection['id']}")
        assert response.status_code == 200
        assert response.json() == {**connection, "databaseCount": 1, "databases": [database]}

    def test_unknown_is_404(self, client):
        assert_error(client.get("/connections/00000000-0000-4000-8000-000000000000"), 404, "not_found")

    def test_malformed_id_is_400(self, client):
        assert_error(client.get("/connections/not-a-uuid"), 400, "invalid_request", "connectionId", "UUID")


@pytest.mark.both_stores
class TestUpdateConnection:
    def patch(self, client, connection, body):
        return client.patch(f"/connections/{connection['id']}", body)

    def test_partial_update_changes_only_sent_fields(self, client, connection):
        response = self.patch(client, connection, {"mysqlHost": "replica.example.com", "mysqlPort": 3307})
        assert response.status_code == 200
        updated = response.json()
        assert updated["updatedAt"] > connection["updatedAt"]
        assert {**updated, "updatedAt": None} == {**connection, "mysqlHost": "replica.example.com",
                                                  "mysqlPort": 3307, "updatedAt": None}
        assert client.get(f"/connections/{connection['id']}").json() == {**updated, "databaseCount": 0, "databases": []}

    def test_empty_body_changes_nothing(self, client, connection):
        before = stored(Connection, connection["id"])
        response = self.patch(client, connection, {})
        assert response.status_code == 200
        assert response.json() == connection
        after = stored(Connection, connection["id"])
        assert after.__data__ == before.__data__

    def test_same_values_change_nothing(self, client, connection):
        response = self.patch(client, connection, {"name": connection["name"],
                                                   "availableSchemas": connection["availableSchemas"]})
        assert response.json() == connection

    @pytest.mark.parametrize("field,value,ok", [
        ("syncInterval", 4, False), ("syncInterval", 5, True), ("syncInterval", 3600, True),
        ("syncInterval", 3601, False),
        ("mysqlPort", 0, False), ("mysqlPort", 1, True), ("mysqlPort", 65535, True), ("mysqlPort", 65536, False),
        ("name", "", False), ("name", "n", True), ("name", "n" * 100, True), ("name", "n" * 101, False),
        ("availableSchemas", [], False), ("availableSchemas", ["shop"], True),
        ("availableSchemas", ["s" * 64], True), ("availableSchemas", ["s" * 65], False),
        ("mysqlHost", "", False), ("mysqlUser", "", False), ("mysqlPassword", "", False),
    ])
    def test_edges(self, client, connection, field, value, ok):
        before = stored(Connection, connection["id"]).__data__
        response = self.patch(client, connection, {field: value})
        if ok:
            assert response.status_code == 200, response.text
            wire = {"syncInterval": "minSyncInterval"}.get(field, field)
            if field != "mysqlPassword":
                assert response.json()[wire] == value
        else:
            assert_error(response, 400, "invalid_request", field)
            assert stored(Connection, connection["id"]).__data__ == before

    @pytest.mark.parametrize("body,fragment", [
        ({"colour": "red"}, "'colour'"),
        ({"id": "00000000-0000-4000-8000-000000000000"}, "'id'"),
        ({"backend": "postgres"}, "'backend'"),
        ({"allowedSyncModes": ["poll"]}, "'allowedSyncModes'"),
        ({"minSyncInterval": 10}, "'minSyncInterval'"),
        ({"name": None}, "name: must not be null"),
        ({"mysqlPort": None}, "mysqlPort: must not be null"),
        ({"availableSchemas": None}, "availableSchemas: must not be null"),
        ({"mysqlPort": "3306"}, "mysqlPort: must be an integer"),
        ({"mysqlPort": 3306.5}, "mysqlPort: must be an integer"),
        ({"mysqlPort": True}, "mysqlPort: must be an integer"),
        ({"availableSchemas": "shop"}, "availableSchemas: must be an array"),
        ({"availableSchemas": [1]}, "availableSchemas[0]: must be a string"),
        ({"availableSchemas": ["a", "a"]}, "unique"),
        ({"syncMode": "sometimes"}, "syncMode"),
        ({"syncMode": "logical"}, "syncMode: must be 'poll' or 'binlog'"),
        ({"name": "nul\u0000byte"}, "name: must not contain NUL characters"),
        ({"availableSchemas": ["ok", "bad\u0000"]}, "availableSchemas[1]: must not contain NUL"),
        ({"mysqlUser": "\ud800"}, "mysqlUser: must be valid Unicode text"),
    ])
    def test_invalid_bodies_change_nothing(self, client, connection, body, fragment):
        before = stored(Connection, connection["id"]).__data__
        assert_error(self.patch(client, connection, body), 400, "invalid_request", fragment)
        assert stored(Connection, connection["id"]).__data__ == before

    @pytest.mark.parametrize("raw,content_type,status,code", [
        ("{bad json", "application/json", 400, "invalid_request"),
        (b'{"name": "\xff\xc8"}', "application/json", 400, "invalid_request"),
        ("[]", "application/json", 400, "invalid_request"),
        ("", "application/json", 400, "invalid_request"),
        ("name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("{}", "text/plain", 415, "unsupported_media_type"),
    ])
    def test_malformed_bodies(self, client, connection, raw, content_type, status, code):
        response = client.request("PATCH", f"/connections/{connection['id']}", content=raw,
                                  headers={"Content-Type": content_type})
        assert_error(response, status, code)

    def test_removing_a_schema_in_use_is_409_and_applies_nothing(self, client, connection, database):
        client.post("/databases", {"connectionId": connection["id"], "name": "reports", "mysqlDb": "analytics"})
        client.post("/databases", {"connectionId": connection["id"], "name": "adhoc", "mysqlDb": "analytics"})
        before = stored(Connection, connection["id"]).__data__
        response = self.patch(client, connection, {"availableSchemas": ["other"], "name": "renamed",
                                                   "mysqlHost": "elsewhere"})
        body = assert_error(response, 409, "schema_in_use")
        assert body["message"] == (
            "availableSchemas cannot drop a schema that a database uses: schema 'analytics' is used by "
            "databases 'adhoc', 'reports'; schema 'shop' is used by database 'live'. "
            "Delete or move those databases first; nothing was changed."
        )
        assert stored(Connection, connection["id"]).__data__ == before

    def test_removing_an_unused_schema_works(self, client, connection, database):
        response = self.patch(client, connection, {"availableSchemas": ["shop", "new"]})
        assert response.status_code == 200
        assert response.json()["availableSchemas"] == ["shop", "new"]

    def test_deleted_database_does_not_hold_its_schema(self, client, connection, database):
        assert client.delete(f"/databases/{database['id']}").status_code == 204
        assert self.patch(client, connection, {"availableSchemas": ["analytics"]}).status_code == 200

    def test_name_taken(self, client, connection):
        other = client.post("/connections", connection_payload()).json()
        assert_error(self.patch(client, connection, {"name": other["name"]}), 409, "name_taken")

    def test_name_race_is_name_taken(self, client, connection, monkeypatch):
        other = client.post("/connections", connection_payload()).json()
        before = stored(Connection, connection["id"]).__data__
        monkeypatch.setattr(connections, "_ensure_name_free", lambda *args: None)
        assert_error(self.patch(client, connection, {"name": other["name"], "mysqlHost": "elsewhere"}),
                     409, "name_taken", other["name"])
        assert stored(Connection, connection["id"]).__data__ == before

    def test_credential_changes_are_recorded(self, client, connection):
        version = stored(Connection, connection["id"]).credentials_version
        self.patch(client, connection, {"name": "just-a-rename", "syncInterval": 40})
        assert stored(Connection, connection["id"]).credentials_version == version
        self.patch(client, connection, {"mysqlPassword": "new-Secret-pw-1"})
        assert stored(Connection, connection["id"]).credentials_version == version + 1
        self.patch(client, connection, {"mysqlUser": "other", "mysqlHost": "h2"})
        assert stored(Connection, connection["id"]).credentials_version == version + 2

    def test_resending_the_same_password_is_no_change(self, client, stack):
        body = connection_payload()
        created = client.post("/connections", body).json()
        response = client.patch(f"/connections/{created['id']}", {"mysqlPassword": body["mysqlPassword"]})
        assert response.json() == created

    def test_new_password_is_stored_encrypted(self, client, connection, stack):
        from tests.conftest import SECRETS

        SECRETS.add("brand-New-pw-42")
        self.patch(client, connection, {"mysqlPassword": "brand-New-pw-42"})
        row = stored(Connection, connection["id"])
        assert stack.environment.secret_box.decrypt(row.password_encrypted) == "brand-New-pw-42"

    def test_narrowing_the_sync_policy_moves_databases(self, client):
        body = connection_payload(syncMode="binlog", syncInterval=10)
        conn = client.post("/connections", body).json()
        db_a = client.post("/databases", {"connectionId": conn["id"], "name": "a", "mysqlDb": "shop"}).json()
        assert (db_a["syncMode"], db_a["syncInterval"]) == ("binlog", 10)
        created_b = client.post("/databases", {"connectionId": conn["id"], "name": "b", "mysqlDb": "shop"}).json()
        db_b = client.patch(f"/databases/{created_b['id']}", {"syncMode": "poll", "syncInterval": 900}).json()
        response = client.patch(f"/connections/{conn['id']}", {"syncMode": "poll", "syncInterval": 60})
        assert response.status_code == 200
        assert (response.json()["allowedSyncModes"], response.json()["minSyncInterval"]) == (["poll"], 60)
        a_now = client.get(f"/databases/{db_a['id']}").json()
        b_now = client.get(f"/databases/{db_b['id']}").json()
        assert (a_now["syncMode"], a_now["syncInterval"]) == ("poll", 60)
        assert (b_now["syncMode"], b_now["syncInterval"]) == ("poll", 900)
        assert b_now["updatedAt"] == db_b["updatedAt"]

    def test_widening_the_policy_leaves_databases(self, client, connection, database):
        client.patch(f"/connections/{connection['id']}", {"syncMode": "binlog", "syncInterval": 5})
        assert client.get(f"/databases/{database['id']}").json() == database

    def test_unknown_is_404(self, client):
        assert_error(client.patch("/connections/00000000-0000-4000-8000-000000000000", {"name": "x"}),
                     404, "not_found")


class TestDeleteConnection:
    def test_deletes_and_keeps_record(self, client, connection):
        assert client.delete(f"/connections/{connection['id']}").status_code == 204
        assert_error(client.get(f"/connections/{connection['id']}"), 404, "not_found")
        assert stored(Connection, connection["id"]).deleted_at is not None
        assert_error(client.delete(f"/connections/{connection['id']}"), 404, "not_found")

    def test_with_databases_is_409(self, client, connection, database):
        assert_error(client.delete(f"/connections/{connection['id']}"), 409, "connection_in_use", "'live'")
        assert stored(Connection, connection["id"]).deleted_at is None

    def test_after_deleting_its_databases(self, client, connection, database):
        client.delete(f"/databases/{database['id']}")
        assert client.delete(f"/connections/{connection['id']}").status_code == 204
        assert stored(Database, database["id"]).deleted_at is not None


class TestSchemaCheckCost:
    """Contract §5.4: the schema-in-use check is one set-based query, whatever the database count."""

    def statements_of_a_refused_patch(self, client, stack, databases: int) -> int:
        conn = client.post("/connections", connection_payload()).json()
        for i in range(databases):
            client.post("/databases", {"connectionId": conn["id"], "name": f"d{i}", "mysqlDb": "shop"})
        principal = Principal(customer_id=conn["customerId"], key_id="test")
        with counted_statements(savepoints=True) as seen, db.connection_context(), pytest.raises(Conflict):
            connections.update_connection(principal, conn["id"], {"availableSchemas": ["analytics"]})
        return len(seen)

    def test_statement_count_does_not_grow_with_databases(self, client, stack):
        one = self.statements_of_a_refused_patch(client, stack, 1)
        many = self.statements_of_a_refused_patch(client, stack, 40)
        # Lock the connection row, count the usage per schema, name the first databases of
        # the one schema in use (one bounded select per schema shown, at most 5).
        assert one == many == 3


class TestRenameStatements:
    """What a rename sends to the store: the statements of its work, no savepoint."""

    def test_without_an_idempotency_key(self, client, connection):
        path = f"/connections/{connection['id']}"
        assert client.patch(path, {"name": "warm"}).status_code == 200   # lastUsedAt is fresh now

        with counted_statements(savepoints=True) as seen:
            response = client.patch(path, {"name": "renamed"})

        assert response.status_code == 200 and response.json()["name"] == "renamed"
        # psycopg2 opens and commits the transaction itself (no BEGIN/COMMIT statement is logged).
        assert [statement_kind(sql) for sql in seen] == [
            "SELECT management_keys", "SELECT connections FOR UPDATE", "UPDATE connections",
            "INSERT audit_entries"]
        assert stored(Connection, connection["id"]).name == "renamed"

