"""The Databases API: one class per operation, whole bodies asserted."""

from __future__ import annotations

import pytest

from app.storage.models import Database
from tests.conftest import Client, connection_payload, make_customer, stored
from tests.support import assert_error, without_generated


def set_status(database: dict, status: str) -> None:
    """Put a database in a lifecycle status (the lifecycle engine is not part of this API yet)."""
    from app.storage.database import db

    with db.connection_context():
        Database.update(status=status).where(Database.id == database["id"]).execute()


@pytest.mark.both_stores
class TestCreateDatabase:
    def test_registers_with_defaults_and_connection_policy(self, client, customer):
        conn = client.post("/connections", connection_payload(syncMode="binlog", syncInterval=45)).json()
        response = client.post("/databases", {"connectionId": conn["id"], "name": "live", "mysqlDb": "shop"})
        assert response.status_code == 201
        created = response.json()
        assert response.headers["location"] == f"/v1/databases/{created['id']}"
        assert without_generated(created) == {
            "customerId": str(customer[0].id), "connectionId": conn["id"], "name": "live",
            "mysqlDb": "shop", "syncMode": "binlog", "syncInterval": 45, "instanceSize": "nano",
            "taskCpu": 256, "taskMemoryMb": 512, "logLevel": "info", "status": "registered",
            "desiredState": None, "lastError": None, "endpointUrl": None, "healthStatus": None,
            "binlogServerId": None, "buildComputeOverride": None, "reflexdbCustomDomain": None,
            "pauseSchedule": None, "tags": [], "region": "local",
        }
        assert created["updatedAt"] == created["createdAt"]   # one timestamp per write

    def test_optional_fields(self, client, connection):
        created = client.post("/databases", {"connectionId": connection["id"], "name": "big", "mysqlDb": "shop",
                                             "instanceSize": "2xlarge", "logLevel": "debug",
                                             "binlogServerId": 4294967295}).json()
        assert (created["instanceSize"], created["taskCpu"], created["taskMemoryMb"], created["logLevel"],
                created["binlogServerId"]) == ("2xlarge", 8192, 16384, "debug", 4294967295)

    def test_schema_not_available_is_400(self, client, connection):
        response = client.post("/databases", {"connectionId": connection["id"], "name": "x", "mysqlDb": "hr"})
        assert_error(response, 400, "invalid_request", "mysqlDb", "'hr'", "availableSchemas")

    def test_unknown_connection_is_400(self, client):
        response = client.post("/databases", {"connectionId": "00000000-0000-4000-8000-000000000000",
                                              "name": "x", "mysqlDb": "shop"})
        assert_error(response, 400, "invalid_request", "connectionId")

    def test_another_customers_connection_is_400_like_unknown(self, client, other_client):
        theirs = other_client.post("/connections", connection_payload()).json()
        response = client.post("/databases", {"connectionId": theirs["id"], "name": "x", "mysqlDb": "shop"})
        assert_error(response, 400, "invalid_request", "connectionId: no such connection in this account")

    def test_name_taken_within_connection_only(self, client, connection, database):
        response = client.post("/databases", {"connectionId": connection["id"], "name": "live", "mysqlDb": "shop"})
        assert_error(response, 409, "name_taken", "'live'")
        other = client.post("/connections", connection_payload()).json()
        assert client.post("/databases", {"connectionId": other["id"], "name": "live",
                                          "mysqlDb": "shop"}).status_code == 201

    def test_binlog_server_id_unique_per_source_server(self, client, connection):
        base = {"connectionId": connection["id"], "mysqlDb": "shop", "binlogServerId": 7}
        assert client.post("/databases", {**base, "name": "a"}).status_code == 201
        assert_error(client.post("/databases", {**base, "name": "b"}), 409, "binlog_server_id_taken", "7")
        same_server = client.post("/connections", connection_payload()).json()
        assert_error(client.post("/databases", {**base, "connectionId": same_server["id"], "name": "c"}),
                     409, "binlog_server_id_taken")
        elsewhere = client.post("/connections", connection_payload(mysqlHost="other.example.com")).json()
        assert client.post("/databases", {**base, "connectionId": elsewhere["id"], "name": "d"}).status_code == 201

    @pytest.mark.parametrize("body,fragment", [
        ({"name": ""}, "name"), ({"name": "n" * 101}, "name"), ({"mysqlDb": ""}, "mysqlDb"),
        ({"instanceSize": "huge"}, "instanceSize"), ({"logLevel": "trace"}, "logLevel"),
        ({"binlogServerId": 0}, "binlogServerId"), ({"binlogServerId": 4294967296}, "binlogServerId"),
        ({"status": "running"}, "'status'"), ({"syncMode": "poll"}, "'syncMode'"),
        ({"connectionId": "nope"}, "connectionId"), ({"name": None}, "name: must not be null"),
    ])
    def test_invalid(self, client, connection, body, fragment):
        payload = {"connectionId": connection["id"], "name": "x", "mysqlDb": "shop", **body}
        assert_error(client.post("/databases", payload), 400, "invalid_request", fragment)
        assert client.get("/databases").json() == []


class TestListDatabases:
    def test_own_live_databases(self, client, other_client, connection, database):
        theirs = other_client.post("/connections", connection_payload(instance={"name": "t", "mysqlDb": "shop"}))
        assert theirs.status_code == 201
        second = client.post("/databases", {"connectionId": connection["id"], "name": "two",
                                            "mysqlDb": "analytics"}).json()
        gone = client.post("/databases", {"connectionId": connection["id"], "name": "gone",
                                          "mysqlDb": "shop"}).json()
        client.delete(f"/databases/{gone['id']}")
        assert client.get("/databases").json() == [database, second]


@pytest.mark.both_stores
class TestUpdateDatabase:
    def patch(self, client, database, body):
        return client.patch(f"/databases/{database['id']}", body)

    def test_partial_update(self, client, database):
        body = {"name": "renamed", "instanceSize": "medium", "logLevel": "warn",
                "buildComputeOverride": "BUILD_GENERAL1_XLARGE",
                "pauseSchedule": {"pauseAt": "22:00", "resumeAt": "06:30", "days": [1, 5]},
                "tags": [{"label": "prod", "color": "red"}, {"label": "eu", "color": "blue"}]}
        response = self.patch(client, database, body)
        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["updatedAt"] > database["updatedAt"]
        assert {**updated, "updatedAt": None} == {**database, **body, "taskCpu": 1024, "taskMemoryMb": 2048,
                                                  "updatedAt": None}
        assert client.get(f"/databases/{database['id']}").json() == updated

    def test_empty_body_changes_nothing(self, client, database):
        before = stored(Database, database["id"]).__data__
        assert self.patch(client, database, {}).json() == database
        assert stored(Database, database["id"]).__data__ == before

    def test_nullable_fields_clear(self, client, database):
        self.patch(client, database, {"binlogServerId": 9, "buildComputeOverride": "BUILD_GENERAL1_LARGE",
                                      "pauseSchedule": {"pauseAt": "01:00", "resumeAt": "02:00"}})
        cleared = self.patch(client, database, {"binlogServerId": None, "buildComputeOverride": None,
                                                "pauseSchedule": None}).json()
        assert (cleared["binlogServerId"], cleared["buildComputeOverride"], cleared["pauseSchedule"]) == (
            None, None, None)

    def test_pause_schedule_days_default_to_every_day(self, client, database):
        updated = self.patch(client, database, {"pauseSchedule": {"pauseAt": "01:00", "resumeAt": "02:00"}})
        assert updated.json()["pauseSchedule"] == {"pauseAt": "01:00", "resumeAt": "02:00", "days": []}

    @pytest.mark.parametrize("body,fragment", [
        ({"tags": [{"label": "t", "color": "red"}] * 6}, "tags"),
        ({"tags": [{"label": "x" * 31, "color": "red"}]}, "label"),
        ({"tags": [{"label": "x", "color": "teal"}]}, "color"),
        ({"tags": [{"label": "x"}]}, "color"),
        ({"pauseSchedule": {"pauseAt": "24:00", "resumeAt": "01:00"}}, "pauseAt"),
        ({"pauseSchedule": {"pauseAt": "01:00", "resumeAt": "01:00"}}, "resumeAt"),
        ({"pauseSchedule": {"pauseAt": "01:00", "resumeAt": "02:00", "days": [7]}}, "days"),
        ({"pauseSchedule": {"pauseAt": "01:00", "resumeAt": "02:00", "days": [1, 1]}}, "unique"),
        ({"reflexdbCustomDomain": "Not_A_Label"}, "reflexdbCustomDomain"),
        ({"reflexdbCustomDomain": "-edge"}, "reflexdbCustomDomain"),
        ({"syncInterval": 4}, "syncInterval"), ({"syncInterval": 3601}, "syncInterval"),
        ({"syncInterval": 10}, "minSyncInterval"),
        ({"syncMode": "binlog"}, "allowedSyncModes"),
        ({"buildComputeOverride": "HUGE"}, "buildComputeOverride: 'HUGE' is not one of BUILD_GENERAL1_LARGE, "
                                           "BUILD_GENERAL1_XLARGE, BUILD_GENERAL1_2XLARGE, null"),
        ({"name": None}, "name: must not be null"), ({"tags": None}, "tags: must not be null"),
        ({"status": "running"}, "'status'"), ({"connectionId": "00000000-0000-4000-8000-000000000000"},
                                              "'connectionId'"),
    ])
    def test_invalid_changes_nothing(self, client, database, body, fragment):
        before = stored(Database, database["id"]).__data__
        assert_error(self.patch(client, database, body), 400, "invalid_request", fragment)
        assert stored(Database, database["id"]).__data__ == before

    def test_sync_settings_within_policy(self, client):
        conn = client.post("/connections", connection_payload(syncMode="binlog", syncInterval=20)).json()
        db_ = client.post("/databases", {"connectionId": conn["id"], "name": "a", "mysqlDb": "shop"}).json()
        updated = self.patch(client, db_, {"syncMode": "poll", "syncInterval": 20}).json()
        assert (updated["syncMode"], updated["syncInterval"]) == ("poll", 20)

    def test_mysql_db_changes_while_registered(self, client, database):
        assert self.patch(client, database, {"mysqlDb": "analytics"}).json()["mysqlDb"] == "analytics"

    def test_mysql_db_must_be_available(self, client, database):
        assert_error(self.patch(client, database, {"mysqlDb": "hr"}), 400, "invalid_request", "availableSchemas")

    @pytest.mark.parametrize("status,allowed", [("registered", True), ("failed", True), ("stopped", True),
                                                ("running", False), ("paused", False), ("building", False)])
    def test_mysql_db_only_in_some_statuses(self, client, database, status, allowed):
        set_status(database, status)
        response = self.patch(client, database, {"mysqlDb": "analytics"})
        if allowed:
            assert response.status_code == 200
        else:
            assert_error(response, 409, "invalid_state", "registered, failed or stopped", status)
            assert stored(Database, database["id"]).mysql_db == "shop"

    def test_custom_domain_needs_teams_plan(self, client, database):
        assert_error(self.patch(client, database, {"reflexdbCustomDomain": "shop"}), 403, "plan_required", "teams")

    def test_custom_domain_globally_unique(self, stack):
        teams = Client(stack.app, make_customer("Teams", plan="teams")[1])
        other = Client(stack.app, make_customer("Enterprise", plan="enterprise")[1])
        mine = teams.post("/connections", connection_payload(instance={"name": "a", "mysqlDb": "shop"})).json()
        theirs = other.post("/connections", connection_payload(instance={"name": "b", "mysqlDb": "shop"})).json()
        first = teams.patch(f"/databases/{mine['databases'][0]['id']}", {"reflexdbCustomDomain": "shop-eu"})
        assert first.status_code == 200 and first.json()["reflexdbCustomDomain"] == "shop-eu"
        assert_error(other.patch(f"/databases/{theirs['databases'][0]['id']}", {"reflexdbCustomDomain": "shop-eu"}),
                     409, "domain_taken", "shop-eu")

    def test_name_taken(self, client, connection, database):
        other = client.post("/databases", {"connectionId": connection["id"], "name": "two", "mysqlDb": "shop"}).json()
        assert_error(self.patch(client, other, {"name": "live"}), 409, "name_taken")

    @pytest.mark.parametrize("check,body,code,fragment", [
        ("_ensure_name_free", {"name": "live", "reflexdbCustomDomain": "fresh"}, "name_taken", "'live'"),
        ("_ensure_domain_free", {"name": "fresh", "reflexdbCustomDomain": "taken"}, "domain_taken", "'taken'"),
    ])
    def test_a_lost_race_names_the_index_that_refused_it(self, stack, monkeypatch, check, body, code, fragment):
        """The check passed, then a rival committed first: the store's unique index decides, and the
        answer names what it refused, not a guess from the fields sent."""
        from app.domain import databases

        teams = Client(stack.app, make_customer("Teams", plan="teams")[1])
        conn = teams.post("/connections", connection_payload(instance={"name": "live", "mysqlDb": "shop"})).json()
        assert teams.patch(f"/databases/{conn['databases'][0]['id']}",
                           {"reflexdbCustomDomain": "taken"}).status_code == 200
        mine = teams.post("/databases", {"connectionId": conn["id"], "name": "two", "mysqlDb": "shop"}).json()
        before = stored(Database, mine["id"]).__data__
        monkeypatch.setattr(databases, check, lambda *args: None)
        assert_error(self.patch(teams, mine, body), 409, code, fragment)
        assert stored(Database, mine["id"]).__data__ == before

    def test_create_losing_a_name_race_is_name_taken(self, client, connection, database, monkeypatch):
        from app.domain import databases

        monkeypatch.setattr(databases, "_ensure_name_free", lambda *args: None)
        response = client.post("/databases", {"connectionId": connection["id"], "name": "live", "mysqlDb": "shop"})
        assert_error(response, 409, "name_taken", "'live'")
        assert client.get("/databases").json() == [database]

    def test_binlog_server_id_taken(self, client, connection, database):
        self.patch(client, database, {"binlogServerId": 3})
        other = client.post("/databases", {"connectionId": connection["id"], "name": "two", "mysqlDb": "shop"}).json()
        assert_error(self.patch(client, other, {"binlogServerId": 3}), 409, "binlog_server_id_taken")
        assert self.patch(client, database, {"binlogServerId": 3}).status_code == 200


class TestCustomDomainRace:
    """PostgreSQL only: on SQLite, writers serialise, so a rival cannot commit in between."""

    def test_losing_to_a_rival_that_committed_first_is_domain_taken(self, stack, monkeypatch):
        import threading

        from app.domain import databases
        from app.storage.database import db

        teams = Client(stack.app, make_customer("Teams", plan="teams")[1])
        mine = teams.post("/connections", connection_payload(instance={"name": "a", "mysqlDb": "shop"})).json()
        rival = teams.post("/connections", connection_payload(instance={"name": "b", "mysqlDb": "shop"})).json()
        mine, rival = mine["databases"][0], rival["databases"][0]
        check = databases._ensure_domain_free

        def check_then_lose_the_race(row, domain):
            check(row, domain)

            def rival_commits():   # another request on another connection row: nothing orders the two
                with db.connection_context():
                    Database.update(custom_domain=domain).where(Database.id == rival["id"]).execute()

            thread = threading.Thread(target=rival_commits)
            thread.start()
            thread.join(timeout=30)

        monkeypatch.setattr(databases, "_ensure_domain_free", check_then_lose_the_race)
        response = teams.patch(f"/databases/{mine['id']}", {"name": "renamed", "reflexdbCustomDomain": "shop-eu"})
        assert_error(response, 409, "domain_taken", "'shop-eu'")
        assert (stored(Database, mine["id"]).name, stored(Database, mine["id"]).custom_domain) == ("a", None)
        assert stored(Database, rival["id"]).custom_domain == "shop-eu"


@pytest.mark.both_stores
class TestDeleteDatabase:
    @pytest.mark.parametrize("status", ["registered", "stopped", "terminated"])
    def test_soft_deletes(self, client, database, status):
        set_status(database, status)
        assert client.delete(f"/databases/{database['id']}").status_code == 204
        assert_error(client.get(f"/databases/{database['id']}"), 404, "not_found")
        assert stored(Database, database["id"]).deleted_at is not None
        assert_error(client.delete(f"/databases/{database['id']}"), 404, "not_found")

    @pytest.mark.parametrize("status", ["running", "paused", "failed", "building", "queued"])
    def test_not_from_other_statuses(self, client, database, status):
        set_status(database, status)
        assert_error(client.delete(f"/databases/{database['id']}"), 409, "invalid_state", status)
        assert stored(Database, database["id"]).deleted_at is None

    def test_name_free_after_delete(self, client, connection, database):
        client.delete(f"/databases/{database['id']}")
        assert client.post("/databases", {"connectionId": connection["id"], "name": "live",
                                          "mysqlDb": "shop"}).status_code == 201
