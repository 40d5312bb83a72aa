"""Assertions shared by the test modules: the error envelope, generated fields, formats."""

from __future__ import annotations

import re

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def without_generated(resource: dict) -> dict:
    for key in ("id", "createdAt", "updatedAt"):
        assert key in resource
    assert UUID.match(resource["id"])
    assert ISO_Z.match(resource["createdAt"]) and ISO_Z.match(resource["updatedAt"])
    return {k: v for k, v in resource.items() if k not in ("id", "createdAt", "updatedAt")}


def assert_error(response, status: int, code: str, *fragments: str):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body
