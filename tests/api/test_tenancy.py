"""A customer never sees or touches another customer's resources: 404, never 403."""

from __future__ import annotations

import pytest

from app.storage.models import Connection, Database
from tests.conftest import connection_payload, stored
from tests.support import assert_error


@pytest.fixture
def theirs(other_client):
    created = other_client.post("/connections", connection_payload(instance={"name": "t", "mysqlDb": "shop"}))
    assert created.status_code == 201
    return created.json()


@pytest.mark.both_stores
class TestCrossTenant:
    def test_reads_are_404(self, client, theirs):
        assert_error(client.get(f"/connections/{theirs['id']}"), 404, "not_found")
        assert_error(client.get(f"/databases/{theirs['databases'][0]['id']}"), 404, "not_found")
        assert client.get("/connections").json() == []
        assert client.get("/databases").json() == []

    def test_writes_are_404_and_change_nothing(self, client, theirs):
        conn_before = stored(Connection, theirs["id"]).__data__
        db_id = theirs["databases"][0]["id"]
        db_before = stored(Database, db_id).__data__
        assert_error(client.patch(f"/connections/{theirs['id']}", {"name": "mine"}), 404, "not_found")
        assert_error(client.patch(f"/connections/{theirs['id']}", {}), 404, "not_found")
        assert_error(client.delete(f"/connections/{theirs['id']}"), 404, "not_found")
        assert_error(client.patch(f"/databases/{db_id}", {"name": "mine"}), 404, "not_found")
        assert_error(client.patch(f"/databases/{db_id}", {}), 404, "not_found")
        assert_error(client.delete(f"/databases/{db_id}"), 404, "not_found")
        assert stored(Connection, theirs["id"]).__data__ == conn_before
        assert stored(Database, db_id).__data__ == db_before

    def test_same_names_in_different_accounts(self, client, theirs):
        response = client.post("/connections", connection_payload(name=theirs["name"]))
        assert response.status_code == 201
