"""Every request example in the spec runs against the real API and succeeds."""

from __future__ import annotations

import pytest
import yaml

from app.config import DEFAULT_SPEC
from app.storage.database import db as store
from app.storage.models import Build, Customer, Database
from tests.conftest import SECRETS

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
EXAMPLES = [
    (method.upper(), path, operation["requestBody"]["content"]["application/json"]["example"])
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
    if isinstance(operation, dict) and "requestBody" in operation
]


def test_every_operation_with_a_body_has_an_example():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                assert "example" in operation["requestBody"]["content"]["application/json"], f"{method} {path}"


@pytest.mark.parametrize("method,path,example", EXAMPLES, ids=[f"{m} {p}" for m, p, _ in EXAMPLES])
def test_example_runs(client, customer, method, path, example):
    if "mysqlPassword" in example:
        SECRETS.add(example["mysqlPassword"])
    SECRETS.add("s3cret-pass")
    # Resources the example's path or body refer to, made from the examples themselves.
    conn = client.post("/connections", {k: v for k, v in EXAMPLES_BY_OP[("POST", "/connections")].items()
                                        if k not in ("instance", "name")} | {"name": "fixture"}).json()
    db = client.post("/databases", {**EXAMPLES_BY_OP[("POST", "/databases")], "connectionId": conn["id"],
                                    "name": "fixture-db"}).json()
    ids = {"connectionId": conn["id"], "databaseId": db["id"], "customerId": str(customer[0].id)}
    body = dict(example)
    if "connectionId" in body:
        body["connectionId"] = conn["id"]
    if path.startswith("/admin/"):
        _store_update(Customer, customer[0].id, is_admin=True)
    if "buildId" in body:
        # Redeploy needs a running database with a succeeded build.
        _store_update(Database, db["id"], status="running")
        with store.connection_context():
            body["buildId"] = str(Build.create(customer=customer[0].id, database=db["id"], status="succeeded",
                                               compute_type="BUILD_GENERAL1_LARGE").id)
    if method == "PATCH" and path == "/connections/{connectionId}":
        # The example narrows availableSchemas to `shop`; move the fixture database there first.
        client.patch(f"/databases/{db['id']}", {"mysqlDb": "shop"})
    response = client.request(method, path.format(**ids), json_body=body)
    assert response.status_code in (200, 201, 202), response.text


def _store_update(model, ident, **values):
    with store.connection_context():
        model.update(**values).where(model.id == ident).execute()


EXAMPLES_BY_OP = {(m, p): e for m, p, e in EXAMPLES}
