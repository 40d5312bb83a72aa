"""Prebuilt statements (app/storage/prebuilt.py) answer exactly what the peewee queries they replace answer."""

from __future__ import annotations

import itertools
import uuid

import pytest

from app.storage.database import db
from app.storage.models import AuditEntry, Connection, Customer, Database, ManagementKey, utcnow
from app.storage.prebuilt import PrebuiltSelect

pytestmark = pytest.mark.both_stores


def _databases(client, connection, count):
    for n in range(count):
        response = client.post("/databases", {"connectionId": connection["id"], "name": f"db-{n}",
                                              "mysqlDb": "shop"})
        assert response.status_code == 201, response.text


class TestPrebuiltSelect:
    def test_a_callers_row_is_the_row_peewee_reads(self, client, customer, connection, other_client):
        owner = customer[0].id
        with db.connection_context():
            expected = Connection.owned_by(owner).where(Connection.id == connection["id"]).first()
            found = Connection.find_owned(owner, uuid.UUID(connection["id"]))
            with db.atomic():
                locked = Connection.lock_owned(owner, connection["id"])
            assert found.__data__ == expected.__data__ == locked.__data__
            assert found._dirty == set() and not found.is_dirty()
            # Another customer's row, a missing row and a deleted row are None.
            assert Connection.find_owned(uuid.uuid4(), connection["id"]) is None
            assert Connection.find_owned(owner, uuid.uuid4()) is None
            Connection.update(deleted_at=utcnow()).where(Connection.id == connection["id"]).execute()
            assert Connection.find_owned(owner, connection["id"]) is None

    def test_a_connections_first_databases_in_list_order(self, client, connection):
        _databases(client, connection, 4)
        with db.connection_context():
            expected = list(Database.active_on(connection["id"]).order_by(Database.created_at, Database.id)
                            .limit(3))
            rows = Database.first_live_on(uuid.UUID(connection["id"]), 3)
        assert [row.__data__ for row in rows] == [row.__data__ for row in expected]
        assert isinstance(rows[0].tags, list)   # JSON columns converted by their fields

    def test_a_key_with_its_owner(self, customer):
        key_id = customer[1].removeprefix("rmk_").split(".")[0]
        with db.connection_context():
            row = ManagementKey.select(ManagementKey, Customer).join(Customer).where(
                ManagementKey.key_id == key_id).first()
            found = ManagementKey.with_owner(key_id)
            assert ManagementKey.with_owner("0" * 16) is None
        assert found._asdict() == {
            "id": row.id, "customer_id": row.customer.id, "secret_hash": row.secret_hash,
            "last_used_at": row.last_used_at, "expires_at": row.expires_at, "revoked_at": row.revoked_at,
            "is_admin": row.customer.is_admin, "plan": row.customer.plan}
        assert found.is_admin is False

    def test_a_query_whose_text_changes_with_its_arguments_is_refused(self, stack):
        calls = itertools.count()

        def shifting(name):
            query = Connection.select().where(Connection.name == name)
            return query.limit(1) if next(calls) % 2 else query

        ignoring = PrebuiltSelect(Connection, lambda name: Connection.select(), (Connection.name,))
        with db.connection_context():
            with pytest.raises(ValueError, match="the query's SQL changes with its arguments"):
                PrebuiltSelect(Connection, shifting, (Connection.name,)).rows("x")
            with pytest.raises(ValueError, match="each argument must be one parameter"):
                ignoring.rows("x")


class TestPrebuiltWrites:
    def test_an_audit_entry_as_peewee_would_insert_it(self, customer):
        values = dict(customer=customer[0].id, key_id="k1", operation_id="update_connection",
                      resource_type="connection", resource_id=uuid.uuid4(), status=200, request_id="r1",
                      source_ip="127.0.0.1", idempotency_key=None, replayed=False)
        with db.connection_context():
            AuditEntry.insert_row(**values)
            (row,) = AuditEntry.select()
        assert {name: getattr(row, name) for name in values if name != "customer"} == {
            name: value for name, value in values.items() if name != "customer"}
        assert row.customer_id == customer[0].id
        assert isinstance(row.id, uuid.UUID) and row.created_at is not None

    def test_an_update_sets_exactly_its_columns(self, client, customer, connection, other_client):
        other = other_client.post("/connections", {"name": "untouched", "mysqlHost": "h",
                                                   "availableSchemas": ["s"], "mysqlUser": "u",
                                                   "mysqlPassword": "p-untouched"}).json()
        with db.connection_context():
            before = Connection.get_by_id(connection["id"]).__data__
            untouched = Connection.get_by_id(other["id"]).__data__
            now = utcnow()
            changed = Connection.update_row(uuid.UUID(connection["id"]), name="renamed",
                                            available_schemas=["a", "b"], updated_at=now)
            assert changed == 1
            after = Connection.get_by_id(connection["id"]).__data__
            assert Connection.get_by_id(other["id"]).__data__ == untouched
            assert Connection.update_row(uuid.uuid4(), name="nobody") == 0
        assert after == {**before, "name": "renamed", "available_schemas": ["a", "b"], "updated_at": now}
