"""Concurrent database creation and schema removal, through HTTP, against gunicorn and PostgreSQL.

Under any interleaving no database may end up on a schema its connection no
longer lists (contract §5.3). Each round races creators on a `hot` schema
against removers of that schema; whichever takes the connection's row lock
first decides, and the other side gets a clean answer.
"""

from __future__ import annotations

import threading

import requests

from app.storage.database import db
from app.storage.models import Connection, Database
from tests.conftest import connection_payload, make_customer

ROUNDS = 8
CREATORS = 8
REMOVERS = 4


def test_no_database_outlives_its_schema(live_server):
    server = live_server
    _, key = make_customer("Racer")
    headers = {"Authorization": f"Bearer {key}"}
    outcomes: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def call(session, method, path, body):
        response = session.request(method, server + path, json=body, headers=headers, timeout=30)
        with lock:
            outcomes.append((method, response.status_code, response.text))

    def race(round_no):
        conn = requests.post(f"{server}/connections", headers=headers, timeout=10,
                             json=connection_payload(availableSchemas=["keep", "hot"])).json()
        barrier = threading.Barrier(CREATORS + REMOVERS)

        def creator(i):
            with requests.Session() as session:
                barrier.wait()
                call(session, "POST", "/databases", {"connectionId": conn["id"], "name": f"r{round_no}-c{i}",
                                                     "mysqlDb": "hot"})

        def remover(_i):
            with requests.Session() as session:
                barrier.wait()
                call(session, "PATCH", f"/connections/{conn['id']}", {"availableSchemas": ["keep"]})

        threads = [threading.Thread(target=creator, args=(i,)) for i in range(CREATORS)]
        threads += [threading.Thread(target=remover, args=(i,)) for i in range(REMOVERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    for round_no in range(ROUNDS):
        race(round_no)

    # Every answer is a decision, never an error: created, updated, or refused
    # with a conflict (schema_in_use) or, once the schema is gone, a 400 naming it.
    for method, status, text in outcomes:
        if status == 400:
            assert method == "POST" and "is not in the connection's availableSchemas" in text, text
        else:
            assert status in (200, 201, 409), (method, status, text)
            if status == 409:
                assert '"schema_in_use"' in text, text
    assert len(outcomes) == ROUNDS * (CREATORS + REMOVERS)
    statuses = {s for _, s, _ in outcomes}
    assert 201 in statuses and (200 in statuses or 409 in statuses)

    with db.connection_context():
        live = list(Database.select(Database, Connection).join(Connection).where(Database.deleted_at.is_null()))
        violations = [(d.name, d.mysql_db, d.connection.available_schemas) for d in live
                      if d.mysql_db not in d.connection.available_schemas]
    assert violations == []
    assert len(live) == sum(1 for m, s, _ in outcomes if m == "POST" and s == 201)
