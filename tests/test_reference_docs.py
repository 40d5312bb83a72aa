"""The HTML reference built from the spec (`scripts/spec.py reference`, Redocly build-docs) and the
spec itself are served beside the Swagger UI, and what is served is the checked-in file."""

from __future__ import annotations

import shutil

import pytest
import requests
import yaml

from app import create_app
from app.api.reference import REFERENCE_NAME, embedded_spec
from app.config import DEFAULT_SPEC, Settings
from tests.spec_tools import redocly, spec_script  # noqa: F401  (redocly is a fixture)
from tests.support import assert_error

CHECKED_IN = DEFAULT_SPEC.read_bytes()
REFERENCE = DEFAULT_SPEC.with_name(REFERENCE_NAME)
REBUILD = "rebuild it with `.venv/bin/python scripts/spec.py reference`"


def test_the_checked_in_reference_is_built_from_the_checked_in_spec(redocly, tmp_path):  # noqa: F811
    fresh = tmp_path / REFERENCE_NAME
    spec_script.build_reference(DEFAULT_SPEC, fresh)
    # The build is deterministic: any difference is a spec (or tool) change not rebuilt.
    assert REFERENCE.read_bytes() == fresh.read_bytes(), f"openapi/{REFERENCE_NAME} is stale: {REBUILD}"


def test_the_reference_needs_nothing_from_the_network():
    page = REFERENCE.read_text()
    assert "<script src=" not in page and "<link rel=\"stylesheet\" href=" not in page


def test_the_served_spec_and_reference_are_the_checked_in_file(live_server):
    """Through gunicorn, as deployed: CI fails here when what is served differs from the file."""
    spec = requests.get(f"{live_server}/openapi.yaml", timeout=10)
    assert spec.status_code == 200
    assert spec.headers["content-type"] == "application/yaml; charset=utf-8"
    assert spec.content == CHECKED_IN

    as_json = requests.get(f"{live_server}/openapi.json", timeout=10)
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    # The same document, $refs kept (Connexion's own inlines them all: five times the size).
    assert as_json.json() == yaml.safe_load(CHECKED_IN)
    assert '"$ref":"#/components/schemas/Error"' in as_json.text
    assert len(as_json.content) < len(CHECKED_IN)

    reference = requests.get(f"{live_server}/reference", timeout=10)
    assert reference.status_code == 200
    assert reference.headers["content-type"] == "text/html; charset=utf-8"
    assert embedded_spec(reference.text) == yaml.safe_load(CHECKED_IN)
    assert reference.content == REFERENCE.read_bytes()

    explorer = requests.get(f"{live_server}/ui/", timeout=10)
    assert explorer.status_code == 200 and explorer.headers["content-type"].startswith("text/html")


def test_head_answers_headers_only_and_other_methods_are_refused(client):
    head = client.request("HEAD", "/openapi.yaml", key=None)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(CHECKED_IN))
    for path in ("/openapi.yaml", "/openapi.json", "/reference"):
        refused = client.request("POST", path, key=None)
        assert_error(refused, 405, "method_not_allowed")
        assert refused.headers["allow"] == "GET, HEAD"


@pytest.fixture
def forked_spec(tmp_path):
    """A team's fork of the spec (REFLEXDB_SPEC), served by its own app on the embedded store."""
    folder = tmp_path / "fork"
    folder.mkdir()
    spec = yaml.safe_load(CHECKED_IN)
    spec["info"]["description"] += "\nForked.\n"
    path = folder / "openapi.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    def client():
        settings = Settings.from_env(environ={}, data_dir=tmp_path / "data", spec_path=path)
        return create_app(settings).test_client()
    return path, client


def test_a_fork_is_served_verbatim_and_without_a_reference_says_how_to_build_one(forked_spec):
    path, client = forked_spec
    http = client()
    assert http.get("/v1/openapi.yaml").content == path.read_bytes()
    assert_error(http.get("/v1/reference"), 404, "not_found", f"no API reference is built for this spec: {REBUILD}")


def test_a_reference_built_from_another_spec_is_not_served(forked_spec):
    path, client = forked_spec
    shutil.copy(REFERENCE, path.with_name(REFERENCE_NAME))  # built from the checked-in spec, not the fork
    assert_error(client().get("/v1/reference"), 404, "not_found",
                 f"the API reference was built from another version of the spec: {REBUILD}")


def test_a_reference_built_from_the_fork_is_served(redocly, forked_spec):  # noqa: F811
    path, client = forked_spec
    spec_script.build_reference(path, path.with_name(REFERENCE_NAME))
    page = client().get("/v1/reference")
    assert page.status_code == 200
    assert embedded_spec(page.text) == yaml.safe_load(path.read_text())
