"""The action endpoints beyond the matrix: bodies, queued goals, keys, in-place work, the engine's calls."""

from __future__ import annotations

import json
import uuid

import pytest

from app.domain import environment, lifecycle
from app.storage.database import db
from app.storage.models import QueryKey
from tests.lifecycle.conftest import add_build, set_state, stored_database
from tests.support import assert_error


@pytest.mark.both_stores
class TestRequests:
    def test_provision_from_registered(self, client, database, engine):
        response = client.post(f"/databases/{database['id']}/provision")
        assert (response.status_code, response.json()) == (202, {"status": "testing_connection",
                                                                 "desiredState": None})
        got = client.get(f"/databases/{database['id']}").json()
        assert (got["status"], got["desiredState"]) == ("testing_connection", None)
        assert engine.woken == [database["id"]]

    def test_a_json_body_is_ignored_where_the_action_takes_none(self, client, database):
        response = client.post(f"/databases/{database['id']}/provision", {})
        assert (response.status_code, response.json()["status"]) == (202, "testing_connection")

    def test_another_customers_database_is_404(self, other_client, database, engine):
        response = other_client.post(f"/databases/{database['id']}/provision")
        assert_error(response, 404, "not_found", database["id"])
        assert stored_database(database).status == "registered" and engine.woken == []

    def test_a_deleted_database_is_404(self, client, database):
        assert client.delete(f"/databases/{database['id']}").status_code == 204
        assert_error(client.post(f"/databases/{database['id']}/provision"), 404, "not_found")
        assert_error(client.get(f"/databases/{database['id']}/instance"), 404, "not_found")

    def test_malformed_id_is_400(self, client):
        assert_error(client.post("/databases/not-a-uuid/pause"), 400, "invalid_request", "UUID")

    def test_without_a_key_is_401(self, client, database):
        assert_error(client.post(f"/databases/{database['id']}/pause", key=None), 401, "unauthorized")

    def test_a_started_action_clears_a_goal_left_from_before(self, client, database):
        set_state(database, status="failed", desired_state="paused", last_error="the deploy failed")
        response = client.post(f"/databases/{database['id']}/provision")
        assert response.json() == {"status": "testing_connection", "desiredState": None}
        row = stored_database(database)
        assert (row.desired_state, row.last_error) == (None, None)


class TestBodies:
    @pytest.mark.parametrize("body,fragment", [
        ({}, "instanceSize: is required"), ({"instanceSize": "huge"}, "'huge' is not one of"),
        ({"instanceSize": "small", "extra": 1}, "'extra'"), ({"instanceSize": None}, "must not be null"),
    ])
    def test_resize_checks_its_body(self, client, database, body, fragment):
        assert_error(client.post(f"/databases/{database['id']}/resize", body), 400, "invalid_request", fragment)
        assert stored_database(database).instance_size == "nano"

    def test_resize_needs_a_body(self, client, database):
        assert_error(client.post(f"/databases/{database['id']}/resize"), 400, "invalid_request")

    def test_resize_on_running_redeploys_the_deployed_build(self, client, database):
        old, deployed = add_build(database), add_build(database)
        set_state(database, status="running", deployed_build_id=deployed.id)
        response = client.post(f"/databases/{database['id']}/resize", {"instanceSize": "xlarge"})
        assert response.json() == {"status": "deploying", "desiredState": None}
        row = stored_database(database)
        assert (row.instance_size, row.operation, row.operation_params) == (
            "xlarge", "resize", {"buildId": str(deployed.id)})
        assert old.id != deployed.id
        got = client.get(f"/databases/{database['id']}").json()
        assert (got["instanceSize"], got["taskCpu"], got["taskMemoryMb"]) == ("xlarge", 4096, 8192)

    def test_redeploy_deploys_the_build_given(self, client, database):
        first, _latest = add_build(database), add_build(database)
        set_state(database, status="paused")
        response = client.post(f"/databases/{database['id']}/redeploy", {"buildId": str(first.id)})
        assert response.json() == {"status": "deploying", "desiredState": None}
        row = stored_database(database)
        assert (row.operation, row.operation_params) == ("redeploy", {"buildId": str(first.id)})

    def test_redeploy_of_an_unknown_build_is_400(self, client, database):
        add_build(database)
        set_state(database, status="running")
        unknown = str(uuid.uuid4())
        assert_error(client.post(f"/databases/{database['id']}/redeploy", {"buildId": unknown}), 400,
                     "invalid_request", f"buildId: no build {unknown} of this database")

    def test_redeploy_of_another_databases_build_is_400(self, client, connection, database):
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "analytics"}).json()
        theirs = add_build(other)
        add_build(database)
        set_state(database, status="running")
        assert_error(client.post(f"/databases/{database['id']}/redeploy", {"buildId": str(theirs.id)}), 400,
                     "invalid_request", "buildId")

    def test_redeploy_of_a_failed_build_is_409(self, client, database):
        add_build(database)
        failed = add_build(database, status="failed")
        set_state(database, status="running")
        response = client.post(f"/databases/{database['id']}/redeploy", {"buildId": str(failed.id)})
        assert response.json() == {
            "error": "no_successful_build",
            "message": f"build {failed.id} is failed; redeploy needs a build that succeeded "
                       "(GET /v1/databases/{id}/builds lists them)",
        }
        assert stored_database(database).status == "running"

    def test_redeploy_with_a_malformed_build_id_is_400(self, client, database):
        assert_error(client.post(f"/databases/{database['id']}/redeploy", {"buildId": "nope"}), 400,
                     "invalid_request", "buildId")


@pytest.mark.both_stores
class TestQueued:
    def test_a_later_queued_request_replaces_an_earlier_one(self, client, database, engine):
        set_state(database, status="building")
        path = f"/databases/{database['id']}"
        assert client.post(f"{path}/pause").json() == {"status": "building", "desiredState": "paused"}
        assert client.post(f"{path}/terminate").json() == {"status": "building", "desiredState": "terminated"}
        assert client.post(f"{path}/pause").json() == {"status": "building", "desiredState": "paused"}
        assert client.get(path).json()["desiredState"] == "paused"
        assert stored_database(database).status == "building"
        assert engine.woken == [database["id"]] * 3

    def test_resume_queued_while_pausing(self, client, database):
        set_state(database, status="pausing")
        response = client.post(f"/databases/{database['id']}/resume")
        assert response.json() == {"status": "pausing", "desiredState": "running"}


def _mint_key(client, database) -> dict:
    response = client.post(f"/databases/{database['id']}/api-keys", {"name": "app"})
    assert response.status_code == 201
    return response.json()


@pytest.mark.both_stores
class TestTerminateRevokesKeys:
    @pytest.mark.parametrize("status", ["running", "deploying"])
    def test_keys_are_revoked_in_the_request(self, client, stack, database, status):
        _mint_key(client, database)
        _mint_key(client, database)
        set_state(database, status=status)
        assert client.post(f"/databases/{database['id']}/terminate").status_code == 202
        assert client.get(f"/databases/{database['id']}/api-keys").json() == []
        with db.connection_context():
            assert QueryKey.select().where(QueryKey.revoked_at.is_null()).count() == 0
        # The keys file the instance reads lists no key any more.
        keys_file = stack.settings.data_dir / "instances" / database["id"] / "keys.json"
        assert json.loads(keys_file.read_text())["keys"] == {}

    def test_other_databases_keep_their_keys(self, client, connection, database):
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "analytics"}).json()
        kept = _mint_key(client, other)
        set_state(database, status="running")
        client.post(f"/databases/{database['id']}/terminate")
        assert [k["id"] for k in client.get(f"/databases/{other['id']}/api-keys").json()] == [kept["id"]]


@pytest.mark.both_stores
class TestInPlace:
    def test_requests_accumulate_until_the_engine_has_done_them(self, client, database, engine):
        set_state(database, status="running")
        path = f"/databases/{database['id']}"
        assert client.post(f"{path}/reload").json() == {"status": "running", "desiredState": None}
        assert client.post(f"{path}/pause-replication").json() == {"replication_paused": True}
        assert client.post(f"{path}/reload").json() == {"status": "running", "desiredState": None}
        row = stored_database(database)
        assert (row.operation_params, row.replication_paused, row.generation) == (
            {"pending": ["reload", "replication"]}, True, 3)
        with db.connection_context():
            lifecycle.finish_in_place(database["id"], ["reload"])
        assert stored_database(database).operation_params == {"pending": ["replication"]}
        assert client.post(f"{path}/resume-replication").json() == {"replication_paused": False}
        with db.connection_context():
            lifecycle.finish_in_place(database["id"], ["replication"])
        row = stored_database(database)
        assert (row.operation_params, row.replication_paused) == (None, False)

    def test_a_new_operation_drops_pending_in_place_work(self, client, database):
        set_state(database, status="running")
        client.post(f"/databases/{database['id']}/reload")
        client.post(f"/databases/{database['id']}/pause")
        row = stored_database(database)
        assert (row.status, row.operation, row.operation_params) == ("pausing", "pause", None)


@pytest.mark.both_stores
class TestApplyDesiredState:
    """What the engine calls when a database reaches a stable status."""

    def apply(self, database):
        with db.connection_context():
            return lifecycle.apply_desired_state(database["id"])

    def test_a_queued_goal_is_started(self, client, database):
        set_state(database, status="building")
        client.post(f"/databases/{database['id']}/terminate")
        set_state(database, status="running", generation=5)
        assert self.apply(database) == "terminate"
        row = stored_database(database)
        assert (row.status, row.operation, row.desired_state, row.generation) == (
            "terminating", "terminate", None, 6)
        assert client.get(f"/databases/{database['id']}").json()["desiredState"] is None

    def test_a_goal_the_stable_status_does_not_allow_is_dropped_with_a_reason(self, database):
        set_state(database, status="failed", desired_state="paused", last_error="the build failed: boom")
        assert self.apply(database) is None
        row = stored_database(database)
        assert (row.status, row.desired_state) == ("failed", None)
        assert row.last_error == (
            "the queued pause was dropped: pause is not allowed while the database is failed; it is allowed "
            "from running, and it can be queued while the database is queued, building, deploying or resuming")

    def test_a_goal_already_reached_is_cleared(self, database):
        set_state(database, status="running", desired_state="running")
        assert self.apply(database) is None
        row = stored_database(database)
        assert (row.status, row.desired_state, row.generation) == ("running", None, 0)

    def test_nothing_happens_in_a_transitional_status(self, database):
        set_state(database, status="deploying", desired_state="paused")
        assert self.apply(database) is None
        assert stored_database(database).desired_state == "paused"


class TestLiveFields:
    def test_database_reads_show_what_the_engine_wrote(self, client, database):
        set_state(database, status="running", endpoint_url="http://127.0.0.1:41001", health_status="degraded",
                  last_error="the instance was restarted after it stopped")
        expected = {"status": "running", "endpointUrl": "http://127.0.0.1:41001", "healthStatus": "degraded",
                    "lastError": "the instance was restarted after it stopped"}
        one = client.get(f"/databases/{database['id']}").json()
        listed = client.get("/databases").json()[0]
        for body in (one, listed):
            assert {k: body[k] for k in expected} == expected


def test_engine_port_defaults_to_a_no_op(stack):
    assert environment.Environment(secret_box=None).engine.wake("any") is None

