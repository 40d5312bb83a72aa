"""The actions on a provisioned database, carried out by a real worker on real instances."""

from __future__ import annotations

import pytest
import requests

from app.engine.steps import handle_of
from app.storage.models import Build, Database
from tests.conftest import stored
from tests.engine.lifecycle.conftest import wait_until
from tests.engine.lifecycle.support import create_database, instance_rows, query, settled


@pytest.fixture
def running(client, shop, workers, act):
    """A provisioned, running database with a query key: (database, key, GET body)."""
    workers.start()
    database = create_database(client, shop)
    key = client.post(f"/databases/{database['id']}/api-keys", {"name": "k"}).json()["key"]
    act(database["id"], "provision")
    body = settled(client, database["id"])
    assert body["status"] == "running", body
    return database, key, body


def live_health(workers, database_id) -> dict:
    [instance] = [row for row in instance_rows(database_id) if row.stopped_at is None]
    return workers.runtime().health(handle_of(workers.runtime(), instance))


def test_reload_raises_swap_count(client, workers, act, running):
    database, key, _ = running
    assert live_health(workers, database["id"])["swapCount"] == 0
    assert act(database["id"], "reload").status_code == 202
    wait_until(lambda: live_health(workers, database["id"])["swapCount"] == 1, what="a reload")
    # The worker copies it into the store, where the user reads it; the request is done.
    wait_until(lambda: client.get(f"/databases/{database['id']}/instance").json()["instance"]["swapCount"] == 1,
               what="swapCount in GET /databases/{id}/instance")
    row = stored(Database, database["id"])
    assert (row.status, row.operation_params, row.last_error) == ("running", None, None)
    assert len(instance_rows(database["id"])) == 1


def test_pause_and_resume_replication(client, workers, act, running):
    database, key, _ = running
    act(database["id"], "pause-replication")
    wait_until(lambda: live_health(workers, database["id"])["replicationPaused"] is True, what="a frozen snapshot")
    act(database["id"], "resume-replication")
    wait_until(lambda: live_health(workers, database["id"])["replicationPaused"] is False, what="sync again")
    assert len(instance_rows(database["id"])) == 1


def test_pause_stops_the_instance_and_resume_serves_again(client, shop, workers, act, running):
    database, key, first = running
    [instance] = instance_rows(database["id"])
    act(database["id"], "pause")
    paused = settled(client, database["id"])
    assert (paused["status"], paused["endpointUrl"], paused["healthStatus"]) == ("paused", None, None)
    assert instance_rows(database["id"])[0].stopped_at is not None
    assert workers.runtime().instances_of(database["id"]) == []
    with pytest.raises(requests.ConnectionError):
        query(first["endpointUrl"], key, "users { id }")

    shop.execute("INSERT INTO {schema}.users VALUES (3, 'Mo', 'mo@example.com')")
    act(database["id"], "resume")
    resumed = settled(client, database["id"])
    assert resumed["status"] == "running" and resumed["lastError"] is None
    # The snapshot is loaded afresh.
    assert query(resumed["endpointUrl"], key, "users { name }").json() == [
        {"name": "Ada"}, {"name": "Lin"}, {"name": "Mo"}]
    old, new = instance_rows(database["id"])
    assert new.build_id == old.build_id and new.stopped_at is None


def test_terminate_releases_everything(client, workers, act, running):
    database, key, first = running
    act(database["id"], "terminate")
    body = settled(client, database["id"])
    assert (body["status"], body["endpointUrl"]) == ("terminated", None)
    assert workers.runtime().instances_of(database["id"]) == []
    assert all(row.stopped_at is not None for row in instance_rows(database["id"]))


def test_resize_on_running_redeploys_with_the_new_size(client, workers, act, running):
    database, key, first = running
    [old] = instance_rows(database["id"])
    act(database["id"], "resize", {"instanceSize": "small"})
    body = settled(client, database["id"])
    assert body["status"] == "running" and body["instanceSize"] == "small"
    assert live_health(workers, database["id"])["memoryLimitMb"] == 1024
    assert stored(Database, database["id"]).deployed_config["instance_size"] == "small"
    previous, current = instance_rows(database["id"])
    assert previous.id == old.id and previous.stopped_at is not None
    assert current.build_id == old.build_id
    assert query(body["endpointUrl"], key, "users { id }").status_code == 200
    # The old instance served until the new one did, and is stopped right after.
    wait_until(lambda: len(workers.runtime().instances_of(database["id"])) == 1, what="the old instance to stop")
    with pytest.raises(requests.ConnectionError):
        query(first["endpointUrl"], key, "users { id }")


def test_resize_on_paused_applies_at_resume(client, workers, act, running):
    database, key, _ = running
    act(database["id"], "pause")
    assert settled(client, database["id"])["status"] == "paused"
    act(database["id"], "resize", {"instanceSize": "medium"})
    assert settled(client, database["id"])["status"] == "paused"
    assert workers.runtime().instances_of(database["id"]) == []
    act(database["id"], "resume")
    assert settled(client, database["id"])["status"] == "running"
    assert live_health(workers, database["id"])["memoryLimitMb"] == 2048


def test_redeploy_of_an_earlier_build(client, workers, act, running):
    database, key, first = running
    [build_a] = Build.select().where(Build.database == database["id"])
    config = {"version": 1, "tables": [{"name": "users"}]}
    assert client.request("PUT", f"/databases/{database['id']}/config", json_body=config).status_code == 200
    act(database["id"], "rebuild")
    rebuilt = settled(client, database["id"])
    assert query(rebuilt["endpointUrl"], key, "posts { id }").status_code == 400   # not in build B

    act(database["id"], "redeploy", {"buildId": str(build_a.id)})
    body = settled(client, database["id"])
    assert body["status"] == "running"
    assert query(body["endpointUrl"], key, "posts { id }").json() == [{"id": 10}, {"id": 11}, {"id": 12}]
    assert stored(Database, database["id"]).deployed_build_id == build_a.id
    assert Build.select().where(Build.database == database["id"]).count() == 2
    assert [row.build_id for row in instance_rows(database["id"])][-1] == build_a.id


class TestCredentials:
    """A changed password: the running instance keeps serving; resume or rebuild picks up the new one."""

    def change_password(self, client, shop, database):
        shop.set_password("New-Pw-" + shop.password[-8:])
        response = client.patch(f"/connections/{database['connectionId']}", {"mysqlPassword": shop.password})
        assert response.status_code == 200, response.text

    def pending(self, client, database) -> bool:
        return client.get(f"/databases/{database['id']}/instance").json()["credentialsPending"]

    def test_resume_picks_up_the_new_password(self, client, shop, workers, act, running):
        database, key, first = running
        self.change_password(client, shop, database)
        assert query(first["endpointUrl"], key, "users { id }").status_code == 200   # still serving
        assert self.pending(client, database)

        act(database["id"], "pause")
        settled(client, database["id"])
        act(database["id"], "resume")
        body = settled(client, database["id"])
        assert body["status"] == "running", body
        # Its snapshot loaded with the new password (the old one no longer opens MariaDB).
        assert query(body["endpointUrl"], key, "users { id }").status_code == 200
        assert not self.pending(client, database)
        assert stored(Database, database["id"]).deployed_credentials_version == 2

    def test_rebuild_picks_up_the_new_password(self, client, shop, workers, act, running):
        database, key, first = running
        self.change_password(client, shop, database)
        assert self.pending(client, database)
        act(database["id"], "rebuild")
        body = settled(client, database["id"])
        assert body["status"] == "running", body
        assert not self.pending(client, database)
        assert Build.select().where(Build.database == database["id"]).count() == 2
        assert query(body["endpointUrl"], key, "posts { id }").status_code == 200
