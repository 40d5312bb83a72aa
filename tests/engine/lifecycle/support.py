"""Helpers for the engine tests: create databases on the shop, wait for a stable status, query."""

from __future__ import annotations

import requests

from app.storage.database import db
from app.storage.models import Instance
from tests.conftest import SECRETS
from tests.engine.lifecycle.conftest import wait_until

STABLE = ("registered", "running", "paused", "failed", "stopped", "terminated")


def database_body(shop, **connection) -> dict:
    """A POST /connections body for the shop's schema, with a first database on it."""
    body = {"name": "shop", "mysqlHost": "127.0.0.1", "mysqlPort": 3306, "availableSchemas": [shop.schema],
            "mysqlUser": shop.user, "mysqlPassword": shop.password,
            "instance": {"name": "live", "mysqlDb": shop.schema}}
    body.update(connection)
    if "mysqlPassword" in connection:
        SECRETS.add(connection["mysqlPassword"])
    return body


def create_database(client, shop, **connection) -> dict:
    response = client.post("/connections", database_body(shop, **connection))
    assert response.status_code == 201, response.text
    return response.json()["databases"][0]


def settled(client, database_id, timeout: float = 30, statuses=STABLE) -> dict:
    """GET /databases/{id} once it is in one of `statuses` with no queued goal."""
    def stable():
        body = client.get(f"/databases/{database_id}").json()
        return body if body["status"] in statuses and body["desiredState"] is None else None
    return wait_until(stable, timeout, what=f"database {database_id} to reach {statuses}")


def instance_rows(database_id) -> list[Instance]:
    """Every Instance row of the database, oldest first."""
    with db.connection_context():
        return list(Instance.select().where(Instance.database == database_id)
                    .order_by(Instance.created_at, Instance.id))


def query(endpoint: str, key: str, text: str) -> requests.Response:
    return requests.post(f"{endpoint}/query", data=text, timeout=10,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": "text/plain"})
