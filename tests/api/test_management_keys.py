"""Management keys and bearer authentication."""

from __future__ import annotations

import datetime as dt

import pytest

from app.storage.database import db
from app.storage.models import ManagementKey
from tests.conftest import Client
from tests.support import ISO_Z, assert_error


def key_row(key_id: str) -> ManagementKey:
    with db.connection_context():
        return ManagementKey.get(ManagementKey.key_id == key_id)


@pytest.mark.both_stores
class TestCreateManagementKey:
    def test_creates_and_shows_the_key_once(self, client, customer):
        response = client.post("/account/management-keys", {"name": "ci", "expiresAt": "2030-01-01T00:00:00Z"})
        assert response.status_code == 201
        created = response.json()
        assert response.headers["location"] == f"/v1/account/management-keys/{created['id']}"
        assert created["key"].startswith(f"rmk_{created['keyId']}.")
        assert {k: v for k, v in created.items() if k not in ("id", "keyId", "key", "createdAt")} == {
            "customerId": str(customer[0].id), "name": "ci", "lastUsedAt": None,
            "expiresAt": "2030-01-01T00:00:00.000000Z", "revokedAt": None,
        }
        assert ISO_Z.match(created["createdAt"])
        listed = client.get("/account/management-keys").json()
        assert [k["keyId"] for k in listed][-1] == created["keyId"]
        assert all("key" not in k for k in listed)
        # The new key works, and only its hash is stored.
        assert Client(client._client.app, created["key"]).get("/connections").status_code == 200
        assert created["key"].split(".", 1)[1] not in key_row(created["keyId"]).secret_hash

    def test_offset_expiry_is_stored_in_utc(self, client):
        created = client.post("/account/management-keys", {"name": "x", "expiresAt": "2030-01-01T02:00:00+02:00"})
        assert created.json()["expiresAt"] == "2030-01-01T00:00:00.000000Z"

    @pytest.mark.parametrize("body,fragment", [
        ({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 101}, "name"),
        ({"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}, "future"),
        ({"name": "x", "expiresAt": "tomorrow"}, "expiresAt"),
        ({"name": "x", "expiresAt": "2030-01-01T00:00:00"}, "offset"),
        ({"name": "x", "key": "rmk_mine.secret"}, "'key'"),
    ])
    def test_invalid(self, client, body, fragment):
        assert_error(client.post("/account/management-keys", body), 400, "invalid_request", fragment)


class TestListManagementKeys:
    def test_lists_own_keys_without_secrets(self, client, other_client, customer):
        listed = client.get("/account/management-keys").json()
        assert [k["name"] for k in listed] == ["initial key"]
        assert set(listed[0]) == {"id", "customerId", "name", "keyId", "lastUsedAt", "expiresAt", "revokedAt",
                                  "createdAt"}
        assert listed[0]["customerId"] == str(customer[0].id)


@pytest.mark.both_stores
class TestAuthentication:
    def test_missing_key(self, client):
        response = client.get("/connections", key=None)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("token", ["", "garbage", "rmk_", "rmk_nope", "rmk_0123456789abcdef.wrong",
                                       "Basic abc", "rmk_" + "a" * 40 + ".x"])
    def test_wrong_keys(self, client, token):
        response = client.get("/connections", key=token)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"

    def test_right_id_wrong_secret(self, client):
        key_id = client.key.split(".")[0]
        assert_error(client.get("/connections", key=key_id + ".not-the-secret"), 401, "unauthorized")

    def test_expired_key(self, client):
        created = client.post("/account/management-keys", {"name": "short",
                                                           "expiresAt": "2030-01-01T00:00:00Z"}).json()
        with db.connection_context():
            ManagementKey.update(expires_at=dt.datetime(2020, 1, 1)).where(
                ManagementKey.key_id == created["keyId"]).execute()
        assert_error(client.get("/connections", key=created["key"]), 401, "unauthorized")

    def test_revoked_key_stops_at_once(self, client):
        created = client.post("/account/management-keys", {"name": "temp"}).json()
        assert client.get("/connections", key=created["key"]).status_code == 200
        assert client.delete(f"/account/management-keys/{created['id']}").status_code == 204
        assert_error(client.get("/connections", key=created["key"]), 401, "unauthorized")
        # Revoking again is a no-op.
        assert client.delete(f"/account/management-keys/{created['id']}").status_code == 204
        listed = {k["id"]: k for k in client.get("/account/management-keys").json()}
        assert ISO_Z.match(listed[created["id"]]["revokedAt"])

    def test_last_used_at_is_kept(self, client):
        key_id = client.key[len("rmk_"):].split(".")[0]
        assert key_row(key_id).last_used_at is None
        client.get("/connections")
        assert key_row(key_id).last_used_at is not None

    def test_health_needs_no_key(self, client, stack):
        response = client.get("/health", key=None)
        assert response.status_code == 200
        expected = "postgresql" if stack.settings.database_url else "sqlite"
        assert response.json() == {"status": "ok", "storage": expected}

    def test_another_customers_key_cannot_be_revoked(self, client, other_client):
        theirs = other_client.get("/account/management-keys").json()[0]
        assert_error(client.delete(f"/account/management-keys/{theirs['id']}"), 404, "not_found")
        assert other_client.get("/connections").status_code == 200


class TestWhereTheKeyLookupRuns:
    """On PostgreSQL the lookup is sent from the event loop (app/storage/loop_statements.py);
    with every loop connection busy it takes the key-check threads, with the same answers."""

    @pytest.fixture
    def thread_lookups(self, monkeypatch):
        from app.api import security
        seen = []
        original = security._authenticate

        def recorded(token):
            seen.append(token)
            return original(token)

        monkeypatch.setattr(security, "_authenticate", recorded)
        return seen

    def test_sent_from_the_event_loop(self, client, thread_lookups):
        from app.storage import loop_statements
        assert client.get("/connections").status_code == 200
        assert_error(client.get("/connections", key=client.key + "x"), 401, "unauthorized")
        assert thread_lookups == []
        assert len(loop_statements.for_store()._idle) >= 1

    def test_with_every_loop_connection_busy_a_thread_looks_it_up(self, client, thread_lookups, monkeypatch):
        from app.storage import loop_statements
        monkeypatch.setattr(loop_statements.for_store(), "size", 0)
        created = client.post("/account/management-keys", {"name": "temp"}).json()
        assert client.get("/connections", key=created["key"]).status_code == 200
        assert client.delete(f"/account/management-keys/{created['id']}").status_code == 204
        assert_error(client.get("/connections", key=created["key"]), 401, "unauthorized")
        assert thread_lookups == [client.key, created["key"], client.key, created["key"]]
