"""The audit log: every mutating request recorded, read at GET /v1/account/audit-log (docs/api-hardening.md)."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
import requests
import yaml

from app.config import DEFAULT_SPEC
from app.domain import audit as audit_service
from app.domain import connections as connection_service
from app.storage.database import db
from app.storage.models import AuditEntry, Connection
from tests.conftest import SECRETS, Client, connection_payload, make_customer
from tests.support import ISO_Z, UUID, assert_error

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
NEXT = re.compile(r'^<(/v1(/[^>]*))>; rel="next"$')
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def key_id_of(key: str) -> str:
    return key[len("rmk_"):].split(".", 1)[0]


def entries(client, query: str = "") -> list[dict]:
    response = client.get(f"/account/audit-log{query}")
    assert response.status_code == 200, response.text
    return response.json()


def without_generated(entry: dict) -> dict:
    assert UUID.match(entry["id"]) and ISO_Z.match(entry["createdAt"])
    return {k: v for k, v in entry.items() if k not in ("id", "createdAt")}


class TestScriptedSession:
    """A whole session through gunicorn (two workers), then its audit trail, entry by entry."""

    def test_the_trail_of_a_session(self, live_server, customer):
        key = customer[1]
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {key}"

        def send(method, path, request_id=None, **kwargs):
            headers = kwargs.pop("headers", {})
            if request_id:
                headers["X-Request-ID"] = request_id
            return http.request(method, live_server + path, headers=headers, timeout=30, **kwargs)

        body = connection_payload()
        connection = send("POST", "/connections", "s-01", json=body).json()
        c_id = connection["id"]
        create = {"connectionId": c_id, "name": "live", "mysqlDb": "shop"}
        database = send("POST", "/databases", "s-02", json=create, headers={"Idempotency-Key": "db-1"}).json()
        d_id = database["id"]
        assert send("POST", "/databases", "s-03", json=create, headers={"Idempotency-Key": "db-1"}).status_code == 201
        assert send("PATCH", f"/databases/{d_id}", "s-04", json={"logLevel": "debug"},
                    headers={"If-Match": '"stale"'}).status_code == 412
        assert send("PATCH", f"/databases/{d_id}", "s-05", json={"logLevel": "debug"}).status_code == 200
        new_password = "rotated-Pw-77"
        SECRETS.add(new_password)
        assert send("PATCH", f"/connections/{c_id}", "s-06", json={"mysqlPassword": new_password}).status_code == 200
        query_key = send("POST", f"/databases/{d_id}/api-keys", "s-07", json={"name": "storefront"}).json()
        SECRETS.add(query_key["key"])
        assert send("DELETE", f"/databases/{d_id}/api-keys/{query_key['id']}", "s-08").status_code == 204
        assert send("PUT", f"/databases/{d_id}/config", "s-09", json={"version": 1}).status_code == 200
        assert send("POST", f"/databases/{d_id}/provision", "s-10").status_code == 202
        assert send("DELETE", f"/databases/{d_id}", "s-11").status_code == 409
        # Refused by the spec before any operation ran.
        assert send("POST", "/connections", "s-12", json={**body, "mysqlPort": 70000}).status_code == 400
        assert send("POST", "/connections", "s-13", json=body, headers={"Content-Type": "text/plain"},
                    ).status_code in (400, 415)
        # A request id that is not plain text is replaced; none at all gets one too.
        assert send("POST", f"/databases/{d_id}/reload", "bad id!").status_code == 409
        assert send("DELETE", f"/connections/{c_id}").status_code == 409
        # Not recorded: reads, and requests without a valid key.
        assert send("GET", "/connections").status_code == 200
        assert requests.post(f"{live_server}/connections", json=body, timeout=30).status_code == 401
        managed = send("POST", "/account/management-keys", "s-16", json={"name": "ci"}).json()
        SECRETS.add(managed["key"])

        log = http.get(f"{live_server}/account/audit-log", timeout=30)
        assert log.status_code == 200
        trail = log.json()
        common = {"keyId": key_id_of(key), "sourceIp": "127.0.0.1", "idempotencyKey": None, "replayed": False}

        def entry(operation, resource_type, resource_id, status, request_id, **more):
            return {**common, "operationId": operation, "resourceType": resource_type, "resourceId": resource_id,
                    "status": status, "requestId": request_id, **more}

        generated = [e["requestId"] for e in trail if GENERATED_REQUEST_ID.match(e["requestId"])]
        assert len(generated) == 2
        assert [without_generated(e) for e in trail] == [
            entry("create_connection", "connection", c_id, 201, "s-01"),
            entry("create_database", "database", d_id, 201, "s-02", idempotencyKey="db-1"),
            entry("create_database", "database", d_id, 201, "s-03", idempotencyKey="db-1", replayed=True),
            entry("update_database", "database", d_id, 412, "s-04"),
            entry("update_database", "database", d_id, 200, "s-05"),
            entry("update_connection", "connection", c_id, 200, "s-06"),
            entry("create_api_key", "api_key", query_key["id"], 201, "s-07"),
            entry("delete_api_key", "api_key", query_key["id"], 204, "s-08"),
            entry("put_database_config", "database", d_id, 200, "s-09"),
            entry("provision_database", "database", d_id, 202, "s-10"),
            entry("delete_database", "database", d_id, 409, "s-11"),
            entry("create_connection", "connection", None, 400, "s-12"),
            entry("create_connection", "connection", None, trail[12]["status"], "s-13"),
            entry("reload_database", "database", d_id, 409, generated[0]),
            entry("delete_connection", "connection", c_id, 409, generated[1]),
            entry("create_management_key", "management_key", managed["id"], 201, "s-16"),
        ]
        created = [e["createdAt"] for e in trail]
        assert created == sorted(created)
        # Never a secret: not the passwords, not the keys, not a body.
        for secret in (body["mysqlPassword"], new_password, query_key["key"], managed["key"], key):
            assert secret not in log.text
        assert "shop" not in log.text and "storefront" not in log.text


@pytest.mark.both_stores
class TestReading:
    def make_history(self, client) -> list[dict]:
        made = [client.post("/connections", connection_payload()).json() for _ in range(5)]
        client.patch(f"/connections/{made[0]['id']}", {"syncInterval": 60})
        return made

    def test_pages_follow_the_link(self, client):
        self.make_history(client)
        everything = entries(client)
        assert len(everything) == 6
        walked, path = [], "/account/audit-log?limit=2"
        while path:
            response = client.get(path)
            walked += response.json()
            link = response.headers.get("Link")
            path = NEXT.match(link).group(2) if link else None
        assert walked == everything

    def test_filters_by_resource(self, client):
        made = self.make_history(client)
        first = entries(client, f"?resourceId={made[0]['id']}")
        assert [(e["operationId"], e["resourceId"]) for e in first] == [
            ("create_connection", made[0]["id"]), ("update_connection", made[0]["id"])]
        assert len(entries(client, "?resourceType=connection")) == 6
        assert entries(client, "?resourceType=database") == []
        assert entries(client, f"?resourceType=database&resourceId={made[0]['id']}") == []

    def test_filters_by_time(self, client):
        self.make_history(client)
        everything = entries(client)
        since, until = everything[1]["createdAt"], everything[4]["createdAt"]
        assert entries(client, f"?since={since}&until={until}") == everything[1:4]
        assert entries(client, f"?since={since}") == everything[1:]
        assert entries(client, f"?until={until}") == everything[:4]
        assert entries(client, "?since=2999-01-01T00:00:00%2B02:00") == []

    @pytest.mark.parametrize("query,message", [
        ("?since=yesterday",
         "since: 'yesterday' is not an RFC 3339 date-time with an offset, e.g. 2030-01-01T00:00:00Z"),
        ("?since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z", "until: must be later than since"),
        ("?resourceId=42", "resourceId: '42' is not a valid UUID"),
        ("?resourceType=Database", "resourceType: 'Database' has the wrong format (^[a-z][a-z_]*$)"),
        ("?cursor=nope", "cursor: not a cursor this API issued"),
    ])
    def test_bad_filters_are_400(self, client, query, message):
        assert_error(client.get(f"/account/audit-log{query}"), 400, "invalid_request", message)

    def test_an_account_sees_only_its_own_trail(self, client, other_client):
        self.make_history(client)
        assert entries(other_client) == []
        assert len(entries(client)) == 6


@pytest.mark.both_stores
class TestRecording:
    def test_every_mutating_operation_of_the_spec_is_recorded_once(self, stack, customer):
        """Whatever its outcome; an operation added to the spec later is recorded without code of its own."""
        client = Client(stack.app, customer[1])
        connection = client.post("/connections", connection_payload()).json()
        database = client.post("/databases", {"connectionId": connection["id"], "name": "d",
                                              "mysqlDb": "shop"}).json()
        ids = {"connectionId": connection["id"], "databaseId": database["id"]}
        sent = []
        for path, item in SPEC["paths"].items():
            for method in ("post", "put", "patch", "delete"):
                if method not in item:
                    continue
                operation = item[method]
                media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                body = dict(media["example"]) if "example" in media else None
                if body and "name" in body:
                    body["name"] = f"n-{uuid.uuid4().hex[:6]}"
                if body and "connectionId" in body:
                    body["connectionId"] = connection["id"]
                # Other ids are unknown ones: most of these answer 404, which is recorded too.
                url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)
                if operation["operationId"] in ("delete_connection", "delete_database"):
                    url = re.sub(r"/[0-9a-f-]{36}$", f"/{uuid.uuid4()}", url)
                response = client.request(method.upper(), url, json_body=body)
                assert response.status_code < 500, (url, response.text)
                sent.append((operation["operationId"], response.status_code))
        trail = [(e["operationId"], e["status"]) for e in entries(client)][2:]
        assert trail == sent
        assert len(sent) == sum(1 for item in SPEC["paths"].values() for m in ("post", "put", "patch", "delete")
                                if m in item)

    def test_a_5xx_is_recorded(self, client, monkeypatch):
        def explode(*_args, **_kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(connection_service, "create_connection", explode)
        assert_error(client.post("/connections", connection_payload()), 500, "internal_error")
        assert [(e["operationId"], e["status"]) for e in entries(client)] == [("create_connection", 500)]

    def test_an_effect_never_commits_without_its_entry(self, client, monkeypatch, caplog):
        def refuse(_entry):
            raise RuntimeError("the audit table refused the row")

        monkeypatch.setattr(audit_service, "record", refuse)
        with caplog.at_level(logging.ERROR, logger="app.api.audit"):
            assert_error(client.post("/connections", connection_payload(),
                                     headers={"X-Request-ID": "lost-1"}), 500, "internal_error")
        with db.connection_context():
            assert Connection.select().count() == 0 and AuditEntry.select().count() == 0
        # The loss is said, with what the entry held (no body, no secret).
        (line,) = [r.getMessage() for r in caplog.records if r.name == "app.api.audit"]
        assert line.startswith("audit entry lost (request id lost-1, create_connection connection by key ")
        assert line.endswith(", status 500): RuntimeError")

    def test_an_admins_requests_are_in_the_admins_trail(self, stack):
        admin = Client(stack.app, make_customer("Admin", is_admin=True)[1])
        target, _ = make_customer("Target")
        assert admin.patch(f"/admin/customers/{target.id}/plan", {"plan": "pro"}).status_code == 200
        assert [(e["operationId"], e["resourceType"], e["resourceId"]) for e in entries(admin)] == [
            ("update_customer_plan", "customer", str(target.id))]
