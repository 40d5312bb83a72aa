"""GET /databases/{id}/instance: the polling endpoint, whole bodies."""

from __future__ import annotations

import datetime as dt

import pytest

from app.domain import lifecycle
from tests.conftest import SECRETS
from tests.lifecycle.conftest import T0, add_build, add_instance, set_state
from tests.support import assert_error

ARTIFACT = {"version": 1, "backend": "mysql", "schema": "shop", "relations": [], "tables": [
    {"name": "users", "alias": "", "columns": [], "primary_key": [], "where": None},
    {"name": "posts", "alias": "articles", "columns": [], "primary_key": [], "where": None},
]}
DEPLOYED = {"instance_size": "nano", "sync_mode": "poll", "sync_interval": 30, "log_level": "info",
            "safety_net": True}
DEPLOYED_OUT = {"instanceSize": "nano", "taskCpu": 256, "taskMemoryMb": 512, "syncMode": "poll",
                "syncInterval": 30, "logLevel": "info", "safetyNet": True}
CONNECTION_OUT = {"minSyncInterval": 30, "allowedSyncModes": ["poll"], "availableSchemas": ["shop", "analytics"]}


def ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_out(build, database, **overrides) -> dict:
    body = {"id": str(build.id), "databaseId": database["id"], "status": build.status,
            "startedAt": None, "finishedAt": None, "durationSeconds": None,
            "computeType": "BUILD_GENERAL1_LARGE",
            "logsUrl": f"/v1/databases/{database['id']}/builds/{build.id}/logs", "tables": None,
            "createdAt": ts(build.created_at)}
    body.update(overrides)
    return body


# The sync fields of an instance's /health as the engine stores them (app/engine/steps.py).
SYNC_STATE = {"syncMode": "binlog", "effectiveSyncMode": "poll",
              "syncNote": "binlog is not available, the instance polls: log_bin is OFF",
              "replicationPaused": False, "lastSyncAt": "2026-11-26T10:00:01.500Z", "replicationLagMs": None,
              "eventsApplied": None, "position": None, "lastReloadReason": None}


def deployed_database(database, status="running"):
    """A database as the engine leaves it after a deploy: build, live instance, deployed settings."""
    build = add_build(database, artifact=ARTIFACT, started_at=T0, finished_at=T0 + dt.timedelta(seconds=12.5))
    instance = add_instance(database, build, stopped=status != "running", health_status="ok",
                            snapshot_age_ms=1200, swap_count=3, row_counts={"users": 10, "articles": 4},
                            sync_state=SYNC_STATE, last_health_check=T0)
    set_state(database, status=status, deployed_build_id=build.id, deployed_config=DEPLOYED,
              deployed_credentials_version=1, endpoint_url="http://127.0.0.1:41001" if status == "running" else None)
    return build, instance


@pytest.mark.both_stores
class TestInstanceView:
    def test_registered(self, client, database):
        response = client.get(f"/databases/{database['id']}/instance")
        assert response.status_code == 200
        assert response.json() == {
            "database": client.get(f"/databases/{database['id']}").json(),
            "connection": CONNECTION_OUT,
            "deployedInstanceConfig": None,
            "hasPendingChanges": False,
            "credentialsPending": False,
            "instance": None,
            "latestBuild": None,
            "actions": lifecycle.actions_for("registered", False),
        }

    def test_running(self, client, database):
        build, instance = deployed_database(database)
        response = client.get(f"/databases/{database['id']}/instance")
        assert response.json() == {
            "database": client.get(f"/databases/{database['id']}").json(),
            "connection": CONNECTION_OUT,
            "deployedInstanceConfig": DEPLOYED_OUT,
            "hasPendingChanges": False,
            "credentialsPending": False,
            "instance": {
                "id": str(instance.id), "databaseId": database["id"], "buildId": str(build.id),
                "endpointUrl": "http://127.0.0.1:41001", "healthStatus": "ok", "snapshotAgeMs": 1200,
                "swapCount": 3, "rowCounts": {"users": 10, "articles": 4}, "sync": SYNC_STATE,
                "lastHealthCheck": ts(T0),
                "createdAt": ts(T0), "updatedAt": ts(T0),
            },
            "latestBuild": build_out(build, database, startedAt=ts(T0),
                                     finishedAt=ts(T0 + dt.timedelta(seconds=12.5)), durationSeconds=12.5,
                                     tables=["users", "articles"]),
            "actions": lifecycle.actions_for("running", True),
        }
        assert response.json()["database"]["endpointUrl"] == "http://127.0.0.1:41001"

    def test_paused_has_its_settings_but_no_live_instance(self, client, database):
        build, _ = deployed_database(database, status="paused")
        body = client.get(f"/databases/{database['id']}/instance").json()
        assert (body["instance"], body["deployedInstanceConfig"], body["latestBuild"]["id"]) == (
            None, DEPLOYED_OUT, str(build.id))
        assert body["actions"]["resume"] == {"allowed": True, "mode": "immediate"}

    def test_latest_build_is_the_newest(self, client, database):
        add_build(database, created_at=T0)
        newest = add_build(database, status="in_progress", created_at=T0 + dt.timedelta(minutes=1),
                           started_at=T0 + dt.timedelta(minutes=1))
        set_state(database, status="building")
        body = client.get(f"/databases/{database['id']}/instance").json()
        assert body["latestBuild"] == build_out(newest, database, startedAt=ts(T0 + dt.timedelta(minutes=1)))

    def test_failed_shows_no_deployed_settings(self, client, database):
        deployed_database(database)
        set_state(database, status="failed", last_error="the deploy failed: out of memory")
        body = client.get(f"/databases/{database['id']}/instance").json()
        assert (body["deployedInstanceConfig"], body["hasPendingChanges"], body["credentialsPending"]) == (
            None, False, False)
        assert body["database"]["lastError"] == "the deploy failed: out of memory"

    def test_another_customers_database_is_404(self, other_client, database):
        assert_error(other_client.get(f"/databases/{database['id']}/instance"), 404, "not_found")


@pytest.mark.both_stores
class TestPending:
    @pytest.mark.parametrize("status", ["running", "paused"])
    def test_new_credentials_are_pending_until_a_deploy_picks_them_up(self, client, database, status):
        deployed_database(database, status=status)
        path = f"/databases/{database['id']}/instance"
        assert client.get(path).json()["credentialsPending"] is False
        SECRETS.add("a-new-Pw-123!")
        assert client.patch(f"/connections/{database['connectionId']}",
                            {"mysqlPassword": "a-new-Pw-123!"}).status_code == 200
        assert client.get(path).json()["credentialsPending"] is True
        # The deploy that picks them up records the connection's version.
        set_state(database, deployed_credentials_version=2)
        assert client.get(path).json()["credentialsPending"] is False

    def test_credentials_are_not_pending_without_a_deployment(self, client, database):
        client.patch(f"/connections/{database['connectionId']}", {"mysqlUser": "someone-else"})
        assert client.get(f"/databases/{database['id']}/instance").json()["credentialsPending"] is False

    def test_changed_settings_are_pending_changes(self, client, database):
        deployed_database(database)
        path = f"/databases/{database['id']}/instance"
        assert client.get(path).json()["hasPendingChanges"] is False
        assert client.patch(f"/databases/{database['id']}", {"logLevel": "debug"}).status_code == 200
        body = client.get(path).json()
        assert (body["hasPendingChanges"], body["deployedInstanceConfig"]) == (True, DEPLOYED_OUT)
        # A deploy records what it applied (the engine writes lifecycle.current_config).
        set_state(database, deployed_config={**DEPLOYED, "log_level": "debug"})
        body = client.get(path).json()
        assert (body["hasPendingChanges"], body["deployedInstanceConfig"]["logLevel"]) == (False, "debug")

    def test_a_narrowed_sync_policy_is_a_pending_change(self, client, database):
        deployed_database(database)
        client.patch(f"/connections/{database['connectionId']}", {"syncInterval": 60})
        body = client.get(f"/databases/{database['id']}/instance").json()
        assert (body["hasPendingChanges"], body["connection"]["minSyncInterval"],
                body["database"]["syncInterval"]) == (True, 60, 60)
