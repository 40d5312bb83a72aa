"""Issue 14: an account with 100,000 databases gets answers as small, and in as few statements, as one with 10.

The fleet is one connection with databases spread over three schemas, inserted in
bulk by scripts/fleet.py (one INSERT … SELECT generate_series), on PostgreSQL.
Work is measured by counting SQL statements, never by timing.
"""

from __future__ import annotations

import random
import re
import threading
import uuid

import pytest
import requests

from app.storage.database import db
from app.storage.models import Database
from scripts.fleet import FLEET_SCHEMAS, add_databases, make_connection
from tests.support import assert_error, counted_statements

FLEET = 100_000
NEXT = re.compile(r'^<(/v1(/[^>]*))>; rel="next"$')


def statements(client, path: str) -> tuple[int, object]:
    """How many statements GET `path` runs, and its response.

    A request first, so the key's lastUsedAt (written at most once a minute) is
    fresh and no measured request writes it.
    """
    assert client.get(path).status_code == 200
    with counted_statements() as seen:
        response = client.get(path)
    assert response.status_code == 200, response.text
    return len(seen), response


def grow(customer_id, connection_id, total: int, have: int) -> None:
    with db.connection_context():
        add_databases(customer_id, connection_id, total - have, first=have + 1)


def in_use(index_of_schema: int, total: int) -> list[int]:
    """The numbers i of the databases g<i> that use schema s<index_of_schema> (the fleet's round robin)."""
    return [i for i in range(1, total + 1) if i % len(FLEET_SCHEMAS) == index_of_schema]


@pytest.fixture
def fleet(stack, customer):
    """An empty connection of `customer` exposing s0, s1, s2: (customer id, connection id)."""
    with db.connection_context():
        connection_id = make_connection(customer[0].id)
    return customer[0].id, connection_id


class TestStatementsDoNotGrow:
    def test_reads_take_as_many_statements_at_100000_databases_as_at_10(self, client, fleet):
        customer_id, connection_id = fleet
        grow(customer_id, connection_id, 10, 0)
        reads = [
            f"/connections/{connection_id}",
            "/databases",
            "/databases?limit=1000",
            f"/databases?connectionId={connection_id}&limit=1000",
            "/databases?status=registered&limit=1000",
            f"/databases?connectionId={connection_id}&status=registered",
        ]
        small = {path: statements(client, path) for path in reads}
        # A page that starts at a cursor, as the second page of a walk does.
        second_small = self.second_page(client)

        grow(customer_id, connection_id, FLEET, 10)
        large = {path: statements(client, path) for path in reads}
        second_large = self.second_page(client)

        # The connection's read counts its databases only when its first page does not hold them all.
        assert {path: count for path, (count, _) in large.items()} == \
               {path: count + (path == reads[0]) for path, (count, _) in small.items()}
        assert second_large[0] == second_small[0]
        # The key check, the connection, its first 100 databases (and at 100,000, their count).
        assert small[reads[0]][0] == 3
        # The key check, the page.
        assert {small[path][0] for path in reads[1:]} == {2}

        connection = large[reads[0]][1].json()
        assert connection["databaseCount"] == FLEET
        with db.connection_context():
            oldest = [str(row.id) for row in Database.select(Database.id)
                      .order_by(Database.created_at, Database.id).limit(100)]
        assert [d["id"] for d in connection["databases"]] == oldest
        assert len(large["/databases?limit=1000"][1].json()) == 1000
        # An answer is as large as its page, not as the fleet.
        assert len(large[reads[0]][1].content) < 100 * 1024
        assert len(large["/databases"][1].content) < 100 * 1024

    @staticmethod
    def second_page(client):
        first = client.get("/databases?limit=5")
        path = NEXT.match(first.headers["link"]).group(2)
        return statements(client, path)

    def test_a_refused_schema_removal_takes_as_many_statements_at_100000_as_at_10(self, client, fleet):
        customer_id, connection_id = fleet
        grow(customer_id, connection_id, 10, 0)
        counts = []
        for total in (10, FLEET):
            if total > 10:
                grow(customer_id, connection_id, total, 10)
            client.get("/connections")   # lastUsedAt is fresh: no measured request writes it
            with counted_statements() as seen:
                response = client.patch(f"/connections/{connection_id}", {"availableSchemas": ["s0"]})
            assert_error(response, 409, "schema_in_use")
            counts.append(len(seen))
        # The key check, lock the connection, the capped counts of s1 and s2 (one statement), names of s1,
        # names of s2, the audit entry.
        assert counts == [6, 6]


class TestSchemaInUseMessage:
    def test_message_stays_under_1_kb_with_the_right_counts(self, client, fleet):
        customer_id, connection_id = fleet
        grow(customer_id, connection_id, FLEET, 0)
        response = client.patch(f"/connections/{connection_id}", {"availableSchemas": ["s0"], "name": "renamed"})
        body = assert_error(response, 409, "schema_in_use")
        assert len(response.content) < 1024
        s1, s2 = in_use(1, FLEET), in_use(2, FLEET)
        assert (len(s1), len(s2)) == (33_334, 33_333)
        first = {index: ", ".join(repr(name) for name in sorted(f"g{i}" for i in numbers)[:3])
                 for index, numbers in ((1, s1), (2, s2))}
        assert body["message"] == (
            "availableSchemas cannot drop a schema that a database uses: "
            f"schema 's1' is used by more than 1,000 databases, e.g. {first[1]}, …; "
            f"schema 's2' is used by more than 1,000 databases, e.g. {first[2]}, …. "
            "Delete or move those databases first; nothing was changed."
        )
        assert client.get(f"/connections/{connection_id}").json()["name"] == "fleet"

    def test_counts_are_exact_up_to_1000_then_more_than(self, client, fleet):
        customer_id, connection_id = fleet
        grow(customer_id, connection_id, 3001, 0)
        s1, s2 = in_use(1, 3001), in_use(2, 3001)
        assert (len(s1), len(s2)) == (1001, 1000)
        first = {index: ", ".join(repr(name) for name in sorted(f"g{i}" for i in numbers)[:3])
                 for index, numbers in ((1, s1), (2, s2))}
        response = client.patch(f"/connections/{connection_id}", {"availableSchemas": ["s0"]})
        assert assert_error(response, 409, "schema_in_use")["message"] == (
            "availableSchemas cannot drop a schema that a database uses: "
            f"schema 's1' is used by more than 1,000 databases, e.g. {first[1]}, …; "
            f"schema 's2' is used by 1,000 databases, e.g. {first[2]}, …. "
            "Delete or move those databases first; nothing was changed."
        )
        # Removing a schema nobody uses is allowed beside them.
        assert client.patch(f"/connections/{connection_id}", {"availableSchemas": ["s0", "s1", "s2"]}
                            ).status_code == 200

    def test_many_schemas_in_use_are_summarised(self, client):
        """At most five schemas are described; the message stays within the Error schema's 4000 characters."""
        schemas = [f"{'x' * 60}{n:03}" for n in range(100)]
        connection = client.post("/connections", {
            "name": "wide", "mysqlHost": "h", "availableSchemas": schemas, "mysqlUser": "u",
            "mysqlPassword": "pw-wide-Zq8!secret"}).json()
        for schema in schemas[:8]:
            for n in range(4):
                name = f"{schema[-3:]}-{'y' * 90}-{n}"
                assert client.post("/databases", {"connectionId": connection["id"], "name": name,
                                                  "mysqlDb": schema}).status_code == 201
        response = client.patch(f"/connections/{connection['id']}", {"availableSchemas": schemas[99:]})
        message = assert_error(response, 409, "schema_in_use")["message"]
        assert message.count("is used by 4 databases, e.g.") == 5
        assert "; and 3 more schemas in use. Delete or move those databases first" in message
        assert len(message) < 4000


class TestPageWalk:
    def test_a_walk_sees_each_of_100000_databases_exactly_once(self, client, fleet):
        customer_id, connection_id = fleet
        grow(customer_id, connection_id, FLEET, 0)
        with db.connection_context():
            expected = {str(row.id) for row in Database.select(Database.id)}
        seen, pages, path = [], 0, "/databases?limit=1000"
        while path:
            response = client.get(path)
            assert response.status_code == 200, response.text
            seen.extend(item["id"] for item in response.json())
            pages += 1
            link = response.headers.get("link")
            path = NEXT.match(link).group(2) if link else None
        assert pages == FLEET // 1000
        assert len(seen) == len(set(seen)) == FLEET
        assert set(seen) == expected


class TestWalkUnderConcurrentWrites:
    """Issue 10: a walk while rows are inserted and deleted, through gunicorn with two workers."""

    def test_no_row_that_existed_throughout_is_missed_or_repeated(self, live_server, fleet, customer):
        customer_id, connection_id = fleet
        grow(customer_id, connection_id, 3000, 0)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {customer[1]}"
        with db.connection_context():
            before = [str(row.id) for row in Database.select(Database.id, Database.created_at)
                      .order_by(Database.created_at, Database.id)]
            earliest = Database.select(Database.created_at).order_by(Database.created_at).first().created_at
            latest = Database.select(Database.created_at).order_by(-Database.created_at).first().created_at
        deleted, inserted, stop = set(), [], threading.Event()
        errors = []

        def write():
            """Delete existing rows through the API; insert new ones, some dated inside the walked range."""
            rng = random.Random(14)
            n = 0
            try:
                with db.connection_context():
                    while not stop.is_set():
                        victim = rng.choice(before)
                        if victim not in deleted:
                            answer = session.delete(f"{live_server}/databases/{victim}", timeout=30)
                            assert answer.status_code == 204, answer.text
                            deleted.add(victim)
                        n += 1
                        answer = session.post(f"{live_server}/databases", json={
                            "connectionId": connection_id, "name": f"new-{n}", "mysqlDb": "s1"}, timeout=30)
                        assert answer.status_code == 201, answer.text
                        inserted.append(answer.json()["id"])
                        # A row whose created_at falls among the existing ones (another worker's
                        # clock, a long transaction): it may or may not be seen, but moves nothing.
                        at = earliest + (latest - earliest) * rng.random()
                        Database.update(created_at=at).where(Database.id == inserted[-1]).execute()
            except Exception as exc:   # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        seen, url = [], f"{live_server}/databases?limit=50"
        try:
            while url:
                response = session.get(url, timeout=30)
                assert response.status_code == 200, response.text
                seen.extend(item["id"] for item in response.json())
                link = response.headers.get("link")
                url = f"{live_server}{NEXT.match(link).group(2)}" if link else None
        finally:
            stop.set()
            writer.join(timeout=60)
        assert errors == []
        assert len(deleted) > 10 and len(inserted) > 10, "the writer did not run alongside the walk"
        assert len(seen) == len(set(seen)), "a row was repeated"
        throughout = set(before) - deleted
        assert throughout - set(seen) == set(), "a row that existed throughout was missed"
        assert set(seen) <= set(before) | set(inserted)


def test_fleet_ids_are_uuids(fleet, client):
    """The bulk fixture makes rows the API reads like any other."""
    customer_id, connection_id = fleet
    grow(customer_id, connection_id, 3, 0)
    listed = client.get("/databases").json()
    assert sorted((d["name"], d["mysqlDb"]) for d in listed) == [("g1", "s1"), ("g2", "s2"), ("g3", "s0")]
    assert all(uuid.UUID(d["id"]) for d in listed)
    assert {d["connectionId"] for d in listed} == {connection_id}
