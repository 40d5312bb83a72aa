"""Actions asked for while a step runs: queued goals carried out at the next stable status,
and a resize that restarts a deploy under way."""

from __future__ import annotations

from app.storage.models import Build, Database
from tests.conftest import stored
from tests.engine.lifecycle.support import create_database, instance_rows, settled


def test_pause_while_building_ends_paused(client, shop, proxy, workers, act):
    proxy.hold(2)   # the build's connection
    workers.start()
    database = create_database(client, shop, mysqlPort=proxy.port)
    act(database["id"], "provision")
    proxy.wait_arrived(2)
    assert stored(Database, database["id"]).status == "building"

    assert act(database["id"], "pause").status_code == 202
    assert stored(Database, database["id"]).desired_state == "paused"
    proxy.release(2)

    body = settled(client, database["id"])
    assert (body["status"], body["desiredState"], body["endpointUrl"]) == ("paused", None, None)
    assert body["lastError"] is None
    [build] = Build.select().where(Build.database == database["id"])
    assert build.status == "succeeded"
    assert workers.runtime().instances_of(database["id"]) == []
    assert [row.stopped_at is not None for row in instance_rows(database["id"])] == [True]


def test_terminate_while_deploying_ends_terminated(client, shop, proxy, workers, act):
    proxy.hold(3)   # the instance's first snapshot load
    workers.start()
    database = create_database(client, shop, mysqlPort=proxy.port)
    act(database["id"], "provision")
    proxy.wait_arrived(3)
    assert stored(Database, database["id"]).status == "deploying"

    assert act(database["id"], "terminate").status_code == 202
    proxy.release(3)

    body = settled(client, database["id"])
    assert (body["status"], body["desiredState"], body["endpointUrl"]) == ("terminated", None, None)
    assert workers.runtime().instances_of(database["id"]) == []


def test_resize_while_deploying_restarts_the_deploy_with_the_new_size(client, shop, proxy, workers, act):
    proxy.hold(3)
    workers.start()
    database = create_database(client, shop, mysqlPort=proxy.port)
    act(database["id"], "provision")
    proxy.wait_arrived(3)

    assert act(database["id"], "resize", {"instanceSize": "small"}).status_code == 202
    proxy.release(3)

    body = settled(client, database["id"])
    assert body["status"] == "running" and body["instanceSize"] == "small"
    assert stored(Database, database["id"]).deployed_config["instance_size"] == "small"
    # The first deploy's instance was given up, never recorded; only the second one runs.
    [instance] = instance_rows(database["id"])
    assert [h.pid for h in workers.runtime().instances_of(database["id"])] == [instance.handle["pid"]]
