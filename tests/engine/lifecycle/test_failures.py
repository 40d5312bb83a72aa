"""Steps that fail end `failed` with a reason a user can act on, and leave nothing half-done."""

from __future__ import annotations

from app.storage.models import Build
from tests.engine.lifecycle.support import create_database, instance_rows, query, settled


def test_a_failed_build_keeps_its_log(client, shop, workers, act):
    workers.start()
    database = create_database(client, shop)
    config = {"version": 1, "tables": [{"name": "users"}, {"name": "posts"}]}
    assert client.request("PUT", f"/databases/{database['id']}/config", json_body=config).status_code == 200
    shop.execute("DROP TABLE {schema}.posts")

    act(database["id"], "provision")
    body = settled(client, database["id"])
    assert body["status"] == "failed"
    assert body["lastError"] == (f"build failed: the schema config does not fit the source: tables[1].name: "
                                 f"table 'posts' does not exist in schema '{shop.schema}'")
    [build] = Build.select().where(Build.database == database["id"])
    assert build.status == "failed" and build.artifact is None and build.finished_at is not None
    log = client.get(f"/databases/{database['id']}/builds/{build.id}/logs").text
    assert "introspecting tables, columns and keys" in log
    assert "build failed: the schema config does not fit the source: tables[1].name: table 'posts'" in log
    assert instance_rows(database["id"]) == []


def test_a_deploy_whose_instance_cannot_load_fails_with_the_reason(client, shop, proxy, workers, act):
    proxy.hold(3)   # the instance's first load: a table disappears just before it
    workers.start()
    database = create_database(client, shop, mysqlPort=proxy.port)
    act(database["id"], "provision")
    proxy.wait_arrived(3)
    shop.execute("DROP TABLE {schema}.posts")
    proxy.release(3)

    body = settled(client, database["id"])
    assert body["status"] == "failed" and body["endpointUrl"] is None
    assert body["lastError"] == (f"the instance could not load its snapshot: table 'posts' no longer exists in "
                                 f"database '{shop.schema}': rebuild the database")
    [build] = Build.select().where(Build.database == database["id"])
    assert build.status == "succeeded"   # the build was fine; redeploy can use it
    assert instance_rows(database["id"]) == [] and workers.runtime().instances_of(database["id"]) == []


def test_a_failed_rebuild_keeps_the_previous_instance_serving(client, shop, workers, act):
    workers.start()
    database = create_database(client, shop)
    key = client.post(f"/databases/{database['id']}/api-keys", {"name": "k"}).json()["key"]
    act(database["id"], "provision")
    running = settled(client, database["id"])
    shop.set_password("Changed-in-MariaDB-only-1")   # the stored password no longer works

    act(database["id"], "rebuild")
    body = settled(client, database["id"])
    assert body["status"] == "failed"
    assert body["lastError"].startswith(f"build failed: the MySQL server at 127.0.0.1:3306 rejected user "
                                        f"'{shop.user}'")
    # Partial infrastructure: the old instance still answers at its endpoint.
    assert body["endpointUrl"] == running["endpointUrl"]
    assert query(running["endpointUrl"], key, "users { id }").status_code == 200
    builds = list(Build.select().where(Build.database == database["id"]).order_by(Build.created_at))
    assert [b.status for b in builds] == ["succeeded", "failed"]

    # Terminate from failed stops it.
    act(database["id"], "terminate")
    assert settled(client, database["id"])["status"] == "terminated"
    assert workers.runtime().instances_of(database["id"]) == []
