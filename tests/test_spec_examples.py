"""Every request example in the spec runs against the real API and succeeds."""

from __future__ import annotations

import pytest
import yaml

from app.config import DEFAULT_SPEC
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
def test_example_runs(client, method, path, example):
    if "mysqlPassword" in example:
        SECRETS.add(example["mysqlPassword"])
    SECRETS.add("s3cret-pass")
    # Resources the example's path or body refer to, made from the examples themselves.
    conn = client.post("/connections", {k: v for k, v in EXAMPLES_BY_OP[("POST", "/connections")].items()
                                        if k not in ("instance", "name")} | {"name": "fixture"}).json()
    db = client.post("/databases", {**EXAMPLES_BY_OP[("POST", "/databases")], "connectionId": conn["id"],
                                    "name": "fixture-db"}).json()
    ids = {"connectionId": conn["id"], "databaseId": db["id"]}
    body = dict(example)
    if "connectionId" in body:
        body["connectionId"] = conn["id"]
    if method == "PATCH" and path == "/connections/{connectionId}":
        # The example narrows availableSchemas to `shop`; move the fixture database there first.
        client.patch(f"/databases/{db['id']}", {"mysqlDb": "shop"})
    response = client.request(method, path.format(**ids), json_body=body)
    assert response.status_code in (200, 201), response.text


EXAMPLES_BY_OP = {(m, p): e for m, p, e in EXAMPLES}
