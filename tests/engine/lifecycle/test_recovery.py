"""Nothing stays stuck: workers and instances killed with SIGKILL, several workers on one Redis."""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal

from app.domain import environment as domain_environment
from app.engine.queue import EngineQueue
from app.storage.database import db
from app.storage.models import Build, Database
from tests.conftest import stored
from tests.engine.lifecycle.conftest import wait_until
from tests.engine.lifecycle.support import create_database, instance_rows, query, settled


def builds_of(database_id) -> list[Build]:
    with db.connection_context():
        return list(Build.select().where(Build.database == database_id).order_by(Build.created_at))


def test_worker_killed_in_the_middle_of_a_build(client, shop, proxy, workers, act):
    proxy.hold(2)   # 1: testing_connection, 2: the build's connection
    first = workers.start()
    database = create_database(client, shop, mysqlPort=proxy.port)
    act(database["id"], "provision")
    proxy.wait_arrived(2)
    assert stored(Database, database["id"]).status == "building"
    first.kill()

    workers.start()
    body = settled(client, database["id"])
    assert body["status"] == "running", body
    assert body["lastError"] is None
    interrupted, rebuilt = builds_of(database["id"])
    assert interrupted.status == "failed" and interrupted.artifact is None
    assert interrupted.log.endswith("the worker running this build stopped before it finished\n")
    assert rebuilt.status == "succeeded"
    assert [i.build_id for i in instance_rows(database["id"])] == [rebuilt.id]
    assert stored(Database, database["id"]).attempts == 0


def test_a_step_whose_workers_keep_dying_ends_failed(client, shop, proxy, workers, act):
    proxy.hold(2)
    first = workers.start(REFLEXDB_ENGINE_MAX_ATTEMPTS="1")
    database = create_database(client, shop, mysqlPort=proxy.port)
    act(database["id"], "provision")
    proxy.wait_arrived(2)
    first.kill()

    workers.start(REFLEXDB_ENGINE_MAX_ATTEMPTS="1")
    body = settled(client, database["id"])
    assert body["status"] == "failed"
    assert body["lastError"] == (
        "the engine stopped once while building (a worker was killed or lost the store mid-step), so it gave "
        "up: look at the workers' logs, then retry the action")
    [build] = builds_of(database["id"])
    assert build.status == "failed"


def test_a_killed_instance_serves_again_within_seconds(client, shop, workers, act):
    workers.start()
    database = create_database(client, shop)
    key = client.post(f"/databases/{database['id']}/api-keys", {"name": "k"}).json()["key"]
    act(database["id"], "provision")
    first = settled(client, database["id"])
    [original] = instance_rows(database["id"])

    os.kill(original.handle["pid"], signal.SIGKILL)

    def serving_again():
        body = client.get(f"/databases/{database['id']}").json()
        if body["status"] != "running" or body["endpointUrl"] == first["endpointUrl"]:
            return None
        return body if query(body["endpointUrl"], key, "users { id }").status_code == 200 else None

    body = wait_until(serving_again, timeout=15, what="a restarted instance")
    assert body["lastError"].startswith("the instance process stopped unexpectedly (noticed at ")
    assert body["lastError"].endswith("); the engine started it again from the deployed build")
    old, new = instance_rows(database["id"])
    assert old.id == original.id and old.stopped_at is not None
    assert new.stopped_at is None and new.build_id == original.build_id
    assert query(body["endpointUrl"], key, "users { name }").json() == [{"name": "Ada"}, {"name": "Lin"}]


def test_a_new_worker_adopts_running_instances(client, shop, workers, act):
    first = workers.start()
    database = create_database(client, shop)
    act(database["id"], "provision")
    settled(client, database["id"])
    [instance] = instance_rows(database["id"])
    first.kill()

    workers.start()
    # Adopted: health collected by the new worker, never started a second time.
    checked = wait_until(lambda: (row := instance_rows(database["id"])[-1]).last_health_check
                         and row.last_health_check > instance.last_health_check and row,
                         what="a health check by the new worker")
    assert [row.id for row in instance_rows(database["id"])] == [instance.id]
    assert checked.stopped_at is None
    assert [h.pid for h in workers.runtime().instances_of(database["id"])] == [instance.handle["pid"]]
    assert client.get(f"/databases/{database['id']}").json()["lastError"] is None


def test_two_workers_on_one_redis_run_each_step_once(client, stack, shop, workers, act):
    name = f"rx-test-{secrets.token_hex(4)}"
    redis = "redis://127.0.0.1:6379/0"
    queue = EngineQueue(dataclasses.replace(stack.settings, redis_url=redis, queue_name=name))
    environment = stack.environment
    domain_environment.configure(dataclasses.replace(environment, engine=queue))
    try:
        pair = [workers.start(REFLEXDB_REDIS_URL=redis, REFLEXDB_QUEUE_NAME=name) for _ in range(2)]
        databases = [create_database(client, shop, name=f"shop-{n}") for n in range(3)]
        for database in databases:
            act(database["id"], "provision")
            for _ in range(4):   # duplicate wake-ups: both workers race for every database
                queue.wake(database["id"])
        for database in databases:
            assert settled(client, database["id"])["status"] == "running"
    finally:
        domain_environment.configure(environment)
        queue.huey.flush()
    logs = "".join(worker.log() for worker in pair)
    for database in databases:
        assert len(builds_of(database["id"])) == 1
        assert len(instance_rows(database["id"])) == 1
        assert len(workers.runtime().instances_of(database["id"])) == 1
        for step in ("testing_connection -> queued", "queued -> building", "building -> deploying",
                     "deploying -> running"):
            assert logs.count(f"database {database['id']}: {step}") == 1, step
    assert all("Executing app.engine.queue.run_database" in worker.log() for worker in pair)
