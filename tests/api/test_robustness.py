"""Malformed requests and small HTTP defects (issue 6, items 3, 9 and 14), through HTTP:
each answers a 4xx `{error, message}` naming what is wrong, never a 500."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import requests
import uvicorn
import yaml

from app.config import DEFAULT_SPEC
from tests.conftest import connection_payload, free_port
from tests.support import without_generated

NIL = "00000000-0000-4000-8000-000000000000"
JSON = {"Content-Type": "application/json"}


def invalid(message: str) -> dict:
    return {"error": "invalid_request", "message": message}


def post_raw(client, path: str, text: str | bytes, headers=JSON):
    return client.request("POST", path, content=text, headers=headers)


class TestMalformedJson:
    @pytest.mark.parametrize("text,where", [
        ("[" * 10_000 + "]" * 10_000, "line 1 column 33 (char 32)"),
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "line 1 column 161 (char 160)"),
        ('{\n "name": "x",\n "instance": ' + "[" * 40 + "]" * 40 + "}", "line 3 column 45 (char 60)"),
    ])
    def test_deep_nesting_is_400_naming_where(self, client, text, where):
        response = post_raw(client, "/connections", text)
        assert response.status_code == 400
        assert response.json() == invalid(f"the request body is nested deeper than 32 levels at {where}")

    def test_nesting_within_the_bound_reaches_validation(self, client, connection):
        response = client.patch(f"/connections/{connection['id']}", {"name": [[[[[["deep"]]]]]]})
        assert response.status_code == 400
        assert response.json() == invalid("name: must be a string, got an array")

    def test_integer_of_5000_digits_is_400_naming_where(self, client):
        response = post_raw(client, "/connections", '{"name": "x", "mysqlPort": ' + "1" * 5000 + "}")
        assert response.status_code == 400
        assert response.json() == invalid("the request body holds a number of more than 20 digits "
                                          "at line 1 column 28 (char 27)")

    def test_long_digit_runs_inside_strings_are_text(self, client):
        response = client.post("/connections", connection_payload(name="1" * 100))
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "1" * 100

    def test_a_20_digit_integer_reaches_the_range_check(self, client):
        body = json.dumps(connection_payload())[:-1] + ', "mysqlPort": 99999999999999999999}'
        response = post_raw(client, "/connections", body)
        assert response.status_code == 400
        assert response.json() == invalid("mysqlPort: 99999999999999999999 is greater than the maximum of 65535")

    @pytest.mark.parametrize("text,key", [
        ('{"name": "a", "name": "b"}', "name"),
        ('{"name": "a", "instance": {"mysqlDb": "shop", "mysqlDb": "analytics"}}', "mysqlDb"),
        ('{"name": "a", "n\\u0061me": "b"}', "name"),
    ])
    def test_duplicate_keys_are_400_naming_the_key(self, client, text, key):
        response = post_raw(client, "/connections", text)
        assert response.status_code == 400
        assert response.json() == invalid(f'the request body repeats the key "{key}" in one object; '
                                          f"send each key once")

    def test_duplicate_keys_in_a_patch_change_nothing(self, client, connection):
        response = client.request("PATCH", f"/connections/{connection['id']}", headers=JSON,
                                  content='{"name": "first", "name": "second"}')
        assert response.status_code == 400
        assert client.get(f"/connections/{connection['id']}").json()["name"] == connection["name"]

    @pytest.mark.parametrize("literal,message", [
        ("NaN", "the request body is not valid JSON: NaN is not a JSON number"),
        ("-Infinity", "the request body is not valid JSON: -Infinity is not a JSON number"),
        ("1e999", "the request body holds a number out of range: 1e999"),
    ])
    def test_non_finite_numbers_are_400(self, client, literal, message):
        response = post_raw(client, "/connections", '{"name": "x", "mysqlPort": %s}' % literal)
        assert response.status_code == 400
        assert response.json() == invalid(message)

    def test_syntax_error_names_line_and_column(self, client):
        response = post_raw(client, "/connections", '{\n  "name": "x",\n  "mysqlPort": 33 06\n}')
        assert response.status_code == 400
        assert response.json() == invalid("the request body is not valid JSON: Expecting ',' delimiter: "
                                          "line 3 column 19 (char 35)")

    def test_invalid_utf8_is_400(self, client):
        response = post_raw(client, "/connections", b'{"name": "\xff"}')
        assert response.status_code == 400
        assert response.json() == invalid("the request body is not valid utf-8 text")

    def test_unknown_charset_is_415(self, client):
        response = post_raw(client, "/connections", b"{}", headers={"Content-Type": "application/json;charset=klingon"})
        assert response.status_code == 415
        assert response.json() == {"error": "unsupported_media_type",
                                   "message": "unknown charset 'klingon': send UTF-8"}

    def test_body_without_content_type_is_415(self, client):
        response = client.request("POST", "/connections", content=json.dumps(connection_payload()))
        assert response.status_code == 415
        assert response.json() == {"error": "unsupported_media_type",
                                   "message": "send the body as application/json: the Content-Type header is missing"}
        assert client.get("/connections").json() == []

    def test_config_body_without_content_type_is_415(self, client, database):
        response = client.request("PUT", f"/databases/{database['id']}/config", content="version: 1\n")
        assert response.status_code == 415
        assert response.json()["error"] == "unsupported_media_type"

    def test_malformed_content_length_is_400(self, client):
        response = client.request("POST", "/connections", content=b"{}",
                                  headers={**JSON, "Content-Length": "2x"})
        assert response.status_code == 400
        assert response.json() == invalid("the Content-Length header is not a number")


@pytest.fixture
def served(stack):
    """The stack's app behind a real uvicorn socket, in this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def chunks(data: bytes, size: int = 7):
    """A generator body: the client sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


class TestChunkedBodies:
    def test_chunked_body_is_read(self, client):
        body = connection_payload()
        response = client.request("POST", "/connections", headers=JSON,
                                  content=chunks(json.dumps(body).encode()))
        assert response.status_code == 201, response.text
        created = response.json()
        assert without_generated(created) == {
            "customerId": created["customerId"], "name": body["name"], "backend": "mysql",
            "mysqlHost": "db.example.com", "mysqlPort": 3306, "availableSchemas": ["shop", "analytics"],
            "mysqlUser": "reader", "allowedSyncModes": ["poll"], "minSyncInterval": 30,
        }

    def test_chunked_body_over_1_mib_is_413(self, client):
        body = json.dumps(connection_payload(name="x" * (1024 * 1024))).encode()
        response = client.request("POST", "/connections", headers=JSON, content=chunks(body, 64 * 1024))
        assert response.status_code == 413
        assert response.json() == {"error": "payload_too_large",
                                   "message": "the request body is larger than 1024 KiB"}
        assert client.get("/connections").json() == []

    def test_chunked_yaml_config_is_read(self, client, database):
        response = client.request("PUT", f"/databases/{database['id']}/config",
                                  headers={"Content-Type": "application/yaml"},
                                  content=chunks(b"version: 1\ntables:\n  - name: users\n"))
        assert response.status_code == 200, response.text
        assert response.json()["config"] == {"version": 1, "tables": [{"name": "users"}]}

    def test_chunked_over_a_socket(self, served, customer):
        """The same over a real socket: uvicorn de-chunks the body and hands it on in pieces."""
        body = connection_payload()
        response = requests.post(f"{served}/connections", data=chunks(json.dumps(body).encode()),
                                 headers={**JSON, "Authorization": f"Bearer {customer[1]}"}, timeout=10)
        assert response.request.headers["Transfer-Encoding"] == "chunked"
        assert response.status_code == 201, response.text
        assert response.json()["name"] == body["name"]


def spec_paths() -> dict[str, list[str]]:
    paths = yaml.safe_load(DEFAULT_SPEC.read_text())["paths"]
    return {path: [method.upper() for method in item if method in ("get", "post", "put", "patch", "delete")]
            for path, item in paths.items()}


def concrete(path: str) -> str:
    """The path with a well-formed id in every parameter (`{databaseId}`, `{apiKeyId}`...)."""
    return re.sub(r"\{[^}]+\}", NIL, path)


def allowed(methods: list[str]) -> str:
    return ", ".join(sorted(set(methods) | ({"HEAD"} if "GET" in methods else set())))


class TestRoutingDetails:
    """app/api/routing.py overrides Connexion's RoutingAPI._add_operation_internal (not public
    API): these tests guard it, and setup.cfg pins connexion to the minor version they pass on."""

    @pytest.mark.parametrize("path,methods", spec_paths().items())
    def test_options_and_wrong_methods_list_every_method_of_the_path(self, client, path, methods):
        for method in ("OPTIONS", "TRACE", *({"PUT", "PATCH", "DELETE", "POST"} - set(methods))):
            response = client.request(method, concrete(path))
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == allowed(methods)
            assert response.json() == {"error": "method_not_allowed",
                                       "message": "this method is not allowed on this path"}

    def test_allow_of_a_path_with_every_method(self, client):
        response = client.request("OPTIONS", f"/connections/{NIL}")
        assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"

    def test_head_is_served_like_get(self, client, connection):
        response = client.request("HEAD", f"/connections/{connection['id']}")
        assert response.status_code == 200
        assert response.content == b""

    @pytest.mark.parametrize("method,path", [
        ("GET", "/connections/"), ("POST", "/connections/"), ("GET", "/health/"),
        ("GET", f"/connections/{NIL}/"), ("DELETE", f"/databases/{NIL}/config/"),
    ])
    def test_trailing_slash_is_a_404_not_a_redirect(self, client, method, path):
        body = connection_payload() if method == "POST" else None
        response = client.request(method, path, json_body=body)
        assert response.status_code == 404
        assert "location" not in response.headers
        assert response.json() == {"error": "not_found",
                                   "message": "no such resource: paths do not end with a slash"}
        assert client.get("/connections").json() == []

    def test_trailing_slash_over_a_socket(self, served, customer):
        response = requests.get(f"{served}/connections/", allow_redirects=False, timeout=10,
                                headers={"Authorization": f"Bearer {customer[1]}"})
        assert response.status_code == 404
        assert response.json() == {"error": "not_found",
                                   "message": "no such resource: paths do not end with a slash"}

    def test_swagger_ui_keeps_its_slash(self, client):
        response = client.get("/ui/", key=None)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")


class TestNoContent:
    def _assert_empty_204(self, response):
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert "content-type" not in response.headers

    def test_delete_connection(self, client, connection):
        self._assert_empty_204(client.delete(f"/connections/{connection['id']}"))

    def test_over_a_socket(self, served, customer, client, connection):
        response = requests.delete(f"{served}/connections/{connection['id']}", timeout=10,
                                   headers={"Authorization": f"Bearer {customer[1]}"})
        self._assert_empty_204(response)

    def test_delete_database_and_its_config(self, client, database):
        self._assert_empty_204(client.delete(f"/databases/{database['id']}/config"))
        self._assert_empty_204(client.delete(f"/databases/{database['id']}"))

    def test_revoke_keys(self, client, database):
        query_key = client.post(f"/databases/{database['id']}/api-keys", {"name": "reader"}).json()
        self._assert_empty_204(client.delete(f"/databases/{database['id']}/api-keys/{query_key['id']}"))
        management_key = client.post("/account/management-keys", {"name": "ci"}).json()
        self._assert_empty_204(client.delete(f"/account/management-keys/{management_key['id']}"))
