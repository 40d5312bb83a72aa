"""Idempotent retries: `Idempotency-Key` on every POST (docs/api-hardening.md).

The races run through HTTP on gunicorn with two workers (the `live_server` fixture); the
rules for single requests run in process too, on both stores.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import uuid
from urllib.parse import urlparse

import pytest
import requests
import yaml

from app.config import DEFAULT_SPEC, Settings
from app.domain import connections as connection_service
from app.storage.database import db
from app.storage.models import BuildCreditEntry, Connection, Database, IdempotencyRecord, ManagementKey, utcnow
from tests.conftest import SECRETS, Client, connection_payload, make_customer
from tests.support import assert_error

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
REPLAYED = "idempotent-replayed"


def rows(model, *where):
    with db.connection_context():
        query = model.select()
        for condition in where:
            query = query.where(condition)
        return list(query)


def live_post(base: str, key: str, path: str, body=None, idempotency_key: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return requests.post(base + path, json=body, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)


def race(count: int, send) -> list:
    """`send()` from `count` threads released at once; their answers."""
    barrier = threading.Barrier(count)
    answers: list = [None] * count

    def run(i):
        barrier.wait()
        answers[i] = send()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


# -- through gunicorn, two workers ---------------------------------------------------------


class TestOverHttp:
    def test_concurrent_duplicates_make_one_connection_and_get_one_answer(self, live_server, customer):
        body = connection_payload()
        key = str(uuid.uuid4())
        answers = race(8, lambda: live_post(live_server, customer[1], "/connections", body, key))

        assert [a.status_code for a in answers] == [201] * 8
        assert len({a.text for a in answers}) == 1   # one answer, byte for byte
        assert [a.headers.get(REPLAYED, "first") for a in answers].count("true") == 7
        assert len({(a.headers["Location"], a.headers["ETag"]) for a in answers}) == 1
        stored = rows(Connection, Connection.customer == customer[0].id)
        assert [str(c.id) for c in stored] == [answers[0].json()["id"]]
        assert len(rows(IdempotencyRecord)) == 1

    def test_concurrent_duplicate_actions_take_effect_once(self, live_server, customer, connection, database):
        key = str(uuid.uuid4())
        answers = race(6, lambda: live_post(live_server, customer[1], f"/databases/{database['id']}/provision",
                                            idempotency_key=key))

        assert [a.status_code for a in answers] == [202] * 6
        assert [a.json() for a in answers] == [{"status": "testing_connection", "desiredState": None}] * 6
        assert [a.headers.get(REPLAYED, "first") for a in answers].count("true") == 5
        # One provision: one build credit spent, the database's generation moved once.
        assert len(rows(BuildCreditEntry, BuildCreditEntry.customer == customer[0].id)) == 1
        (row,) = rows(Database, Database.id == database["id"])
        assert (row.status, row.operation, row.generation) == ("testing_connection", "provision", 1)

    def test_a_retry_after_a_timeout_never_creates_a_second_connection(self, live_server, customer):
        body = connection_payload()
        key = str(uuid.uuid4())
        # The first attempt: the request is sent whole, then the client gives up without reading.
        send_and_hang_up(live_server, customer[1], "/connections", body, key)
        retry = live_post(live_server, customer[1], "/connections", body, key)
        again = live_post(live_server, customer[1], "/connections", body, key)

        assert retry.status_code == 201, retry.text
        stored = rows(Connection, Connection.customer == customer[0].id)
        assert [str(c.id) for c in stored] == [retry.json()["id"]]
        assert again.status_code == 201 and again.headers[REPLAYED] == "true"
        assert again.json() == retry.json()

    def test_a_replay_after_success_is_the_first_answer(self, live_server, customer):
        body = connection_payload(instance={"name": "first", "mysqlDb": "shop"})
        key = str(uuid.uuid4())
        first = live_post(live_server, customer[1], "/connections", body, key)
        second = live_post(live_server, customer[1], "/connections", body, key)

        assert first.status_code == second.status_code == 201
        assert REPLAYED not in first.headers
        assert second.headers[REPLAYED] == "true"
        assert second.content == first.content
        for header in ("Location", "ETag", "Content-Type"):
            assert second.headers[header] == first.headers[header]
        assert len(rows(Connection)) == 1 and len(rows(Database)) == 1

    def test_a_key_reused_with_another_body_is_refused(self, live_server, customer):
        key = str(uuid.uuid4())
        first = live_post(live_server, customer[1], "/connections", connection_payload(), key)
        other = live_post(live_server, customer[1], "/connections", connection_payload(), key)
        elsewhere = live_post(live_server, customer[1], "/account/management-keys", {"name": "ci"}, key)

        assert first.status_code == 201
        message = (f"Idempotency-Key {key!r} was already used for another request (another operation, "
                   "path or body) in the last 24 hours; send a new key for a new request")
        for refused in (other, elsewhere):
            assert refused.status_code == 409
            assert refused.json() == {"error": "idempotency_key_reused", "message": message}
            assert REPLAYED not in refused.headers
        assert len(rows(Connection)) == 1
        assert len(rows(ManagementKey, ManagementKey.customer == customer[0].id)) == 1   # the fixture's own

    def test_an_expired_key_starts_afresh(self, live_server, customer):
        body = connection_payload()
        key = str(uuid.uuid4())
        first = live_post(live_server, customer[1], "/connections", body, key)
        (record,) = rows(IdempotencyRecord)
        assert record.expires_at - record.created_at == dt.timedelta(hours=24)
        with db.connection_context():
            IdempotencyRecord.update(expires_at=utcnow() - dt.timedelta(seconds=1)).execute()

        # Past its expiry the key is free: the same request is a new one (here: the name is taken now).
        later = live_post(live_server, customer[1], "/connections", body, key)
        assert_error(later, 409, "name_taken")
        assert REPLAYED not in later.headers
        with db.connection_context():
            Connection.delete().execute()
        # The 409 was kept under the key for another 24 hours, as any answer the operation gives.
        replayed = live_post(live_server, customer[1], "/connections", body, key)
        assert replayed.status_code == 409 and replayed.headers[REPLAYED] == "true"
        assert replayed.json() == later.json()
        assert first.status_code == 201 and len(rows(IdempotencyRecord)) == 1

    def test_keys_belong_to_an_account(self, live_server, customer):
        other_key = make_customer("Other Corp")[1]
        key = str(uuid.uuid4())
        body = connection_payload(name="shared")
        mine = live_post(live_server, customer[1], "/connections", body, key)
        theirs = live_post(live_server, other_key, "/connections", body, key)
        assert mine.status_code == theirs.status_code == 201
        assert REPLAYED not in theirs.headers and theirs.json()["id"] != mine.json()["id"]
        # Another management key of the same account replays.
        second_key = live_post(live_server, customer[1], "/account/management-keys", {"name": "ci"}).json()["key"]
        SECRETS.add(second_key)
        again = live_post(live_server, second_key, "/connections", body, key)
        assert again.headers[REPLAYED] == "true" and again.json() == mine.json()


def send_and_hang_up(base: str, key: str, path: str, body: dict, idempotency_key: str) -> None:
    """Send a whole POST over a raw socket and close it without reading the answer (a client timeout)."""
    url = urlparse(base)
    payload = json.dumps(body).encode()
    request = (f"POST {url.path}{path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n"
               f"Idempotency-Key: {idempotency_key}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)


# -- single requests, in process ------------------------------------------------------------


@pytest.mark.both_stores
class TestRules:
    def test_without_a_key_every_post_acts(self, client):
        body = connection_payload()
        assert client.post("/connections", body).status_code == 201
        assert_error(client.post("/connections", body), 409, "name_taken")
        assert rows(IdempotencyRecord) == []

    def test_an_action_is_replayed(self, client, database):
        headers = {"Idempotency-Key": "resize-1"}
        first = client.post(f"/databases/{database['id']}/resize", {"instanceSize": "small"}, headers=headers)
        second = client.post(f"/databases/{database['id']}/resize", {"instanceSize": "small"}, headers=headers)
        assert first.status_code == second.status_code == 202
        assert second.json() == first.json() == {"status": "registered", "desiredState": None}
        assert second.headers[REPLAYED] == "true"
        # The same key and body on another database is another request.
        other = client.post("/databases", {"connectionId": database["connectionId"], "name": "other",
                                           "mysqlDb": "shop"}).json()
        assert_error(client.post(f"/databases/{other['id']}/resize", {"instanceSize": "small"}, headers=headers),
                     409, "idempotency_key_reused")

    def test_the_same_body_written_otherwise_is_the_same_request(self, client):
        body = connection_payload()
        headers = {"Idempotency-Key": "k", "Content-Type": "application/json"}
        first = client.request("POST", "/connections", content=json.dumps(body), headers=headers)
        shuffled = json.dumps(dict(reversed(list(body.items()))), indent=2)
        second = client.request("POST", "/connections", content=shuffled, headers=headers)
        assert second.headers[REPLAYED] == "true" and second.json() == first.json()

    def test_a_4xx_answer_is_kept(self, client, connection):
        body = connection_payload(name=connection["name"])
        headers = {"Idempotency-Key": "taken"}
        first = assert_error(client.post("/connections", body, headers=headers), 409, "name_taken")
        assert client.delete(f"/connections/{connection['id']}").status_code == 204
        again = client.post("/connections", body, headers=headers)
        assert again.status_code == 409 and again.headers[REPLAYED] == "true"
        assert again.json() == first
        assert [c.name for c in rows(Connection, Connection.deleted_at.is_null())] == []

    def test_a_5xx_is_not_kept_and_rolls_back(self, client, monkeypatch, caplog):
        body = connection_payload()
        headers = {"Idempotency-Key": "flaky"}
        real = connection_service.create_connection

        def create_then_fail(principal, payload):
            real(principal, payload)
            raise RuntimeError("the store went away after the insert")

        monkeypatch.setattr(connection_service, "create_connection", create_then_fail)
        assert_error(client.post("/connections", body, headers=headers), 500, "internal_error")
        assert rows(Connection) == [] and rows(IdempotencyRecord) == []
        monkeypatch.setattr(connection_service, "create_connection", real)
        retry = client.post("/connections", body, headers=headers)
        assert retry.status_code == 201 and REPLAYED not in retry.headers
        assert len(rows(Connection)) == 1

    @pytest.mark.parametrize("key,problem", [
        ("", "must be at least 1 character long"),
        ("x" * 256, "must be at most 255 characters long"),
        ("two words", "has the wrong format (1 to 255 letters, digits and - _ . : ~ + / =)"),
        ("é", "has the wrong format (1 to 255 letters, digits and - _ . : ~ + / =)"),
    ])
    def test_the_key_is_bounded(self, client, key, problem):
        # Header values travel as bytes: "é" arrives as its two UTF-8 bytes.
        response = client.request("POST", "/connections", content=json.dumps(connection_payload()),
                                  headers={"Idempotency-Key": key.encode(), "Content-Type": "application/json"})
        body = assert_error(response, 400, "invalid_request")
        assert body["message"].startswith("Idempotency-Key: ") and body["message"].endswith(problem), body
        assert rows(Connection) == []

    def test_a_key_of_every_allowed_character(self, client):
        key = "AZaz09-_.:~+/=" + "k" * 241
        assert len(key) == 255
        body = connection_payload()
        first = client.post("/connections", body, headers={"Idempotency-Key": key})
        second = client.post("/connections", body, headers={"Idempotency-Key": key})
        assert first.status_code == 201 and second.headers[REPLAYED] == "true"

    def test_a_key_shown_once_is_stored_encrypted_and_replayed(self, client):
        headers = {"Idempotency-Key": "new-key"}
        first = client.post("/account/management-keys", {"name": "ci"}, headers=headers)
        secret = first.json()["key"]
        second = client.post("/account/management-keys", {"name": "ci"}, headers=headers)
        SECRETS.add(secret)  # from here on, no response may show it again by accident
        assert second.status_code == 201 and second.headers[REPLAYED] == "true"
        (record,) = rows(IdempotencyRecord)
        assert secret.split(".", 1)[1] not in record.response_encrypted

    def test_expired_records_of_the_account_are_swept(self, client, customer):
        past = utcnow() - dt.timedelta(days=2)
        with db.connection_context():
            for i in range(150):
                IdempotencyRecord.create(customer=customer[0].id, key=f"old-{i}", operation_id="create_connection",
                                         response_encrypted="x", created_at=past, expires_at=past)
        client.post("/connections", connection_payload(), headers={"Idempotency-Key": "fresh"})
        assert len(rows(IdempotencyRecord, IdempotencyRecord.expires_at <= utcnow())) == 50
        client.post("/connections", connection_payload(), headers={"Idempotency-Key": "fresher"})
        assert sorted(r.key for r in rows(IdempotencyRecord)) == ["fresh", "fresher"]


def test_the_expiry_is_a_setting():
    assert Settings.from_env(environ={}).idempotency_ttl_seconds == 86400
    assert Settings.from_env(environ={"REFLEXDB_IDEMPOTENCY_TTL_SECONDS": "3600"}).idempotency_ttl_seconds == 3600
    with pytest.raises(ValueError, match="REFLEXDB_IDEMPOTENCY_TTL_SECONDS must be an integer from 60 to 604800"):
        Settings.from_env(environ={"REFLEXDB_IDEMPOTENCY_TTL_SECONDS": "10"})


def test_every_post_takes_the_key_and_says_when_it_replays():
    """A POST added to the spec later gets the behaviour from the resolver; this keeps its spec in step."""
    posts = [(path, item["post"]) for path, item in SPEC["paths"].items() if "post" in item]
    assert len(posts) == 16
    for path, operation in posts:
        assert {"$ref": "#/components/parameters/IdempotencyKey"} in operation.get("parameters", []), path
        success = next(r for status, r in operation["responses"].items() if status.startswith("2"))
        assert success["headers"]["Idempotent-Replayed"] == {"$ref": "#/components/headers/IdempotentReplayed"}, path
        assert "409" in operation["responses"], path


def test_every_post_of_the_spec_replays_its_answer(stack):
    """Whatever a POST answers (2xx or a 4xx of its operation), the same request again replays it."""
    admin_key = make_customer("Admin", is_admin=True)[1]
    client = Client(stack.app, admin_key)
    connection = client.post("/connections", connection_payload()).json()
    database = client.post("/databases", {"connectionId": connection["id"], "name": "d", "mysqlDb": "shop"}).json()
    ids = {"databaseId": database["id"], "customerId": str(uuid.uuid4())}
    for path, item in SPEC["paths"].items():
        if "post" not in item:
            continue
        operation = item["post"]
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        body = dict(media["example"]) if "example" in media else None
        if body and "name" in body:
            body["name"] = f"n-{uuid.uuid4().hex[:6]}"
        headers = {"Idempotency-Key": f"every-{operation['operationId']}"}
        first = client.post(path.format(**ids), body, headers=headers)
        second = client.post(path.format(**ids), body, headers=headers)
        assert first.status_code < 500, (path, first.text)
        assert (second.status_code, second.json()) == (first.status_code, first.json()), path
        assert second.headers[REPLAYED] == "true", path
