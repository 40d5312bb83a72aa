"""Query keys: minted by the control plane, verified by the instance's own key store."""

from __future__ import annotations

import json
import os

import pytest

from app.instance.keys import KeyStore
from app.storage.database import db
from app.storage.models import Database, QueryKey
from tests.conftest import stored
from tests.support import ISO_Z, UUID, assert_error


def keys_file(stack, database) -> str:
    # The local instance runtime delivers keys as a file instances read (the instance_keys port).
    return str(stack.environment.instance_keys.keys_path(database["id"]))


def verifies(stack, database, key) -> bool:
    return KeyStore(keys_file(stack, database), recheck_seconds=0).verify(key)


@pytest.mark.both_stores
class TestCreateApiKey:
    def test_creates_a_key_the_instance_accepts(self, client, stack, database):
        response = client.post(f"/databases/{database['id']}/api-keys", {"name": "storefront",
                                                                         "expiresAt": "2031-05-01T00:00:00Z"})
        assert response.status_code == 201
        created = response.json()
        assert response.headers["location"] == f"/v1/databases/{database['id']}/api-keys/{created['id']}"
        assert UUID.match(created["id"]) and ISO_Z.match(created["createdAt"])
        assert created["key"].startswith(f"rxk_{created['keyId']}.")
        assert {k: v for k, v in created.items() if k not in ("id", "keyId", "key", "createdAt")} == {
            "databaseId": database["id"], "name": "storefront", "expiresAt": "2031-05-01T00:00:00.000000Z"}
        assert verifies(stack, database, created["key"])
        # The secret is stored encrypted; the keys file is private to the service user.
        secret = json.load(open(keys_file(stack, database)))["secret"]
        assert secret not in stored(Database, database["id"]).query_key_secret_encrypted
        assert oct(os.stat(keys_file(stack, database)).st_mode & 0o777) == "0o600"

    def test_keys_of_one_database_do_not_open_another(self, client, stack, connection, database):
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "shop"}).json()
        mine = client.post(f"/databases/{database['id']}/api-keys", {"name": "a"}).json()
        client.post(f"/databases/{other['id']}/api-keys", {"name": "b"})
        assert not verifies(stack, other, mine["key"])
        forged = mine["key"].replace(f"rxk_{mine['keyId']}", "rxk_0000000000000000")
        assert not verifies(stack, database, forged)

    def test_invalid(self, client, database):
        assert_error(client.post(f"/databases/{database['id']}/api-keys", {"name": ""}), 400, "invalid_request", "name")
        assert_error(client.post(f"/databases/{database['id']}/api-keys", {"name": "x", "scope": "all"}), 400,
                     "invalid_request", "'scope'")
        assert_error(client.post(f"/databases/{database['id']}/api-keys",
                                 {"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}), 400, "invalid_request", "future")

    def test_other_customers_database_is_404(self, client, other_client, database):
        assert_error(other_client.post(f"/databases/{database['id']}/api-keys", {"name": "x"}), 404, "not_found")
        assert_error(other_client.get(f"/databases/{database['id']}/api-keys"), 404, "not_found")


@pytest.mark.both_stores
class TestListAndRevokeApiKeys:
    def test_lists_live_keys_without_secrets_and_revokes(self, client, stack, database):
        base = f"/databases/{database['id']}/api-keys"
        first = client.post(base, {"name": "one"}).json()
        second = client.post(base, {"name": "two"}).json()
        listed = client.get(base).json()
        assert listed == [{k: v for k, v in key.items() if k != "key"} for key in (first, second)]
        assert client.delete(f"{base}/{first['id']}").status_code == 204
        assert [k["name"] for k in client.get(base).json()] == ["two"]
        assert not verifies(stack, database, first["key"])
        assert verifies(stack, database, second["key"])
        assert client.delete(f"{base}/{first['id']}").status_code == 204  # again: no-op

    def test_unknown_key_is_404(self, client, database):
        assert_error(client.delete(f"/databases/{database['id']}/api-keys/00000000-0000-4000-8000-000000000000"),
                     404, "not_found")

    def test_key_of_another_database_is_404(self, client, connection, database):
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "shop"}).json()
        key = client.post(f"/databases/{other['id']}/api-keys", {"name": "x"}).json()
        assert_error(client.delete(f"/databases/{database['id']}/api-keys/{key['id']}"), 404, "not_found")


@pytest.mark.both_stores
class TestDeletingTheDatabaseRevokesItsKeys:
    """Issue 6.7: a deleted database's keys stop working everywhere at once."""

    def test_keys_stop_working_in_the_store_the_file_and_a_running_instance(self, client, stack, connection,
                                                                             database):
        base = f"/databases/{database['id']}/api-keys"
        live = client.post(base, {"name": "live"}).json()
        earlier = client.post(base, {"name": "revoked earlier"}).json()
        assert client.delete(f"{base}/{earlier['id']}").status_code == 204
        earlier_revoked_at = stored(QueryKey, earlier["id"]).revoked_at
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "shop"}).json()
        other_key = client.post(f"/databases/{other['id']}/api-keys", {"name": "x"}).json()
        # The running instance's store, loaded before the delete, re-reading the file as it changes.
        instance = KeyStore(keys_file(stack, database), recheck_seconds=0)
        assert instance.verify(live["key"])

        assert client.delete(f"/databases/{database['id']}").status_code == 204

        assert not instance.verify(live["key"]) and instance.load_error is None
        assert json.load(open(keys_file(stack, database)))["keys"] == {}
        assert stored(QueryKey, live["id"]).revoked_at is not None
        assert stored(QueryKey, earlier["id"]).revoked_at == earlier_revoked_at
        assert_error(client.get(base), 404, "not_found")
        assert_error(client.delete(f"{base}/{live['id']}"), 404, "not_found")
        # Another database's keys are untouched.
        assert verifies(stack, other, other_key["key"])
        assert [k["id"] for k in client.get(f"/databases/{other['id']}/api-keys").json()] == [other_key["id"]]

    def test_a_database_without_keys_gets_no_keys_file(self, client, stack, database):
        assert client.delete(f"/databases/{database['id']}").status_code == 204
        assert not os.path.exists(keys_file(stack, database))

    def test_a_refused_delete_keeps_the_keys(self, client, stack, database):
        key = client.post(f"/databases/{database['id']}/api-keys", {"name": "live"}).json()
        with db.connection_context():
            Database.update(status="running").where(Database.id == database["id"]).execute()
        assert_error(client.delete(f"/databases/{database['id']}"), 409, "invalid_state")
        assert verifies(stack, database, key["key"])
        assert stored(QueryKey, key["id"]).revoked_at is None
