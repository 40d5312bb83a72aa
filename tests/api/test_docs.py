"""The spec and an API explorer are served, without a key."""

from __future__ import annotations

import yaml

from app.config import DEFAULT_SPEC


def test_spec_is_served_as_json(client):
    response = client.get("/openapi.json", key=None)
    assert response.status_code == 200
    assert response.json()["paths"].keys() == yaml.safe_load(DEFAULT_SPEC.read_text())["paths"].keys()


def test_swagger_ui_is_served(client):
    response = client.get("/ui/", key=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
