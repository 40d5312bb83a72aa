"""The benchmark's bare Flask baseline sends the statements the project sends for the same request.

Its ratio is only a fair figure while it does the project's work, no more and no less: the key
lookup, the same statements (the rename's audit entry included) and the same answer. Each case
serves one request through the project and one through the baseline, on the same store, and
compares what reached PostgreSQL (transaction control left out: peewee does not log it).
"""

from __future__ import annotations

import psycopg2.extras
import pytest

from app.storage.database import db
from app.storage.models import AuditEntry, Connection
from bench.baselines import bare_flask
from tests.conftest import PG_URL, stored
from tests.support import counted_statements, statement_kind

CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


@pytest.fixture
def bare(monkeypatch, customer):
    """The baseline's Flask test client, with the bearer key, and the statements it sends."""
    seen: list[str] = []

    class Recording(psycopg2.extras.RealDictCursor):
        def execute(self, query, vars=None):
            seen.append(query)
            return super().execute(query, vars)

    monkeypatch.setenv("BENCH_STORE_DSN", PG_URL)
    monkeypatch.setattr(psycopg2.extras, "RealDictCursor", Recording)
    client = bare_flask.app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {customer[1]}"
    yield client, seen
    conn = getattr(bare_flask._local, "conn", None)
    if conn is not None:
        conn.close()
        bare_flask._local.conn = None


def _work(statements) -> list[str]:
    return [statement_kind(sql) for sql in statements if sql.strip().upper() not in CONTROL]


def test_get_sends_the_projects_statements(client, connection, database, bare):
    bare_client, bare_seen = bare
    path = f"/connections/{connection['id']}"
    assert client.get(path).status_code == 200   # the key's lastUsedAt is fresh from here on

    with counted_statements() as project_seen:
        ours = client.get(path)
    theirs = bare_client.get(f"/v1{path}")

    assert ours.status_code == theirs.status_code == 200
    assert _work(bare_seen) == _work(project_seen) == [
        "SELECT management_keys", "SELECT connections", "SELECT databases"]
    assert theirs.json["databaseCount"] == ours.json()["databaseCount"] == 1
    assert [d["id"] for d in theirs.json["databases"]] == [d["id"] for d in ours.json()["databases"]]


def test_rename_sends_the_projects_statements_and_writes_its_audit_entry(client, customer, connection, bare):
    bare_client, bare_seen = bare
    path = f"/connections/{connection['id']}"
    assert client.patch(path, {"name": "warm"}).status_code == 200

    with counted_statements() as project_seen:
        ours = client.patch(path, {"name": "ours"})
    theirs = bare_client.patch(f"/v1{path}", json={"name": "theirs"})

    assert ours.status_code == theirs.status_code == 200
    assert _work(bare_seen) == _work(project_seen) == [
        "SELECT management_keys", "SELECT connections FOR UPDATE", "UPDATE connections", "INSERT audit_entries"]
    assert theirs.json["name"] == "theirs"
    with db.connection_context():
        assert stored(Connection, connection["id"]).name == "theirs"
        entries = list(AuditEntry.select().where(AuditEntry.resource_id == connection["id"])
                       .order_by(AuditEntry.created_at))
    key_id = customer[1].removeprefix("rmk_").partition(".")[0]
    # The create, the warm-up rename, the project's and the baseline's: the same fields.
    assert [(e.operation_id, e.status, e.resource_type, str(e.customer_id), e.key_id) for e in entries] == [
        ("create_connection", 201, "connection", str(customer[0].id), key_id),
        *[("update_connection", 200, "connection", str(customer[0].id), key_id)] * 3]
