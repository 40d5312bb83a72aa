"""The control plane and the data plane together, on a real MariaDB source.

What the lifecycle engine will automate is done by hand here: build the
artifact with the connection's stored credentials and the database's stored
schema config, then start an instance that reads the keys file the control
plane maintains. Query keys minted and revoked through the API then open and
close the instance's query endpoint.
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from app.build import build_artifact
from app.contracts.instance_settings import InstanceSettings, SourceSettings
from app.engine.runtime import LocalProcessRuntime
from app.sources import SourceCredentials
from app.storage.models import Connection, Database
from tests import servers
from tests.conftest import SECRETS, stored


@pytest.fixture
def shop():
    """A MariaDB schema `rx_e2e_*` with a read-only user of its own."""
    admin = servers.connect_mariadb()
    name = f"rx_e2e_{secrets.token_hex(4)}"
    user, password = f"{name}_r", f"Pw-{secrets.token_urlsafe(12)}"
    SECRETS.add(password)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.users (id INT PRIMARY KEY, name VARCHAR(50), email VARCHAR(80))")
        cur.execute(f"CREATE TABLE {name}.posts (id INT PRIMARY KEY, author_id INT NOT NULL, title VARCHAR(80),"
                    f" FOREIGN KEY (author_id) REFERENCES {name}.users (id))")
        cur.execute(f"INSERT INTO {name}.users VALUES (1, 'Ada', 'ada@example.com'), (2, 'Lin', 'lin@example.com')")
        cur.execute(f"INSERT INTO {name}.posts VALUES (10, 1, 'Engines'), (11, 2, 'Tables'), (12, 1, 'Notes')")
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT SELECT ON {name}.* TO '{user}'@'%'")
    yield {"schema": name, "user": user, "password": password}
    with admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


def test_keys_minted_by_the_api_open_and_close_a_real_instance(client, stack, shop, tmp_path):
    conn = client.post("/connections", {
        "name": "shop", "mysqlHost": servers.mariadb().host, "mysqlPort": servers.mariadb().port,
        "availableSchemas": [shop["schema"]],
        "mysqlUser": shop["user"], "mysqlPassword": shop["password"],
        "instance": {"name": "live", "mysqlDb": shop["schema"]},
    }).json()
    database = conn["databases"][0]
    config = {"version": 1, "tables": [{"name": "users", "alias": "people", "columns": ["id", "name"]},
                                       {"name": "posts"}]}
    assert client.request("PUT", f"/databases/{database['id']}/config", json_body=config).status_code == 200
    key = client.post(f"/databases/{database['id']}/api-keys", {"name": "storefront"}).json()

    # The build, as the lifecycle engine will run it: stored credentials, stored config.
    row, db_row = stored(Connection, conn["id"]), stored(Database, database["id"])
    password = stack.environment.secret_box.decrypt(row.password_encrypted)
    credentials = SourceCredentials(backend=row.backend, host=row.host, port=row.port, user=row.user,
                                    password=password, schema=db_row.mysql_db)
    artifact, log_lines = build_artifact(credentials, db_row.schema_config)
    assert not any(password in line for line in log_lines)

    runtime = LocalProcessRuntime(tmp_path / "instances")
    settings = InstanceSettings(
        database_id=database["id"], artifact_path="-", keys_file="-", sync_interval_seconds=3600,
        source=SourceSettings(backend="mysql", host=row.host, port=row.port, user=row.user,
                              schema=db_row.mysql_db),
    )
    keys_file = stack.environment.instance_keys.keys_path(database["id"])
    handle = runtime.start(database["id"], settings, artifact, password, str(keys_file))
    try:
        deadline = time.monotonic() + 30
        while not runtime.health(handle).get("serving"):
            assert time.monotonic() < deadline, runtime.health(handle)
            time.sleep(0.05)

        def query(text, token):
            return requests.post(f"{handle.endpoint_url}/query", data=text,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                                 timeout=10)

        answer = query("posts { id title author { name } }", key["key"])
        assert answer.status_code == 200, answer.text
        assert answer.json() == [{"id": 10, "title": "Engines", "author": {"name": "Ada"}},
                                 {"id": 11, "title": "Tables", "author": {"name": "Lin"}},
                                 {"id": 12, "title": "Notes", "author": {"name": "Ada"}}]
        people = query('people(name = "Ada") { * posts { title } }', key["key"])
        assert people.json() == [{"id": 1, "name": "Ada", "posts": [{"title": "Engines"}, {"title": "Notes"}]}]
        hidden = query("people { email }", key["key"])
        assert hidden.status_code == 400 and hidden.json()["error"] == "invalid_query"

        # Revoked through the API: the instance refuses the key within seconds, on its own.
        assert client.delete(f"/databases/{database['id']}/api-keys/{key['id']}").status_code == 204
        deadline = time.monotonic() + 5
        while query("posts { id }", key["key"]).status_code != 401:
            assert time.monotonic() < deadline, "a revoked key still works after 5 s"
            time.sleep(0.1)
        assert password not in open(handle.log_path).read()
    finally:
        runtime.stop(handle)
