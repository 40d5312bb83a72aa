"""The control plane's baseline: bare Flask + psycopg2, the same key lookup and SQL, no framework.

It sends the statements the project sends (tests/bench/test_bare_baseline.py serves one request
through each on one store and compares what reached PostgreSQL):

- GET /v1/connections/<id>: the key joined with its customer, the connection, its first
  databases (LIMIT 101: the project embeds up to 100 and asks for one row more); their count
  only when there are more (the project's count is the page's length otherwise).
- PATCH (a rename): the key; then, in one transaction, the row `FOR UPDATE`, the `UPDATE`
  and the audit entry's `INSERT` (the project audits every mutation in the mutation's own
  transaction: app/api/mutations.py). The project sends that `INSERT` in the same round trip
  as its `COMMIT` (`PooledStore.execute_at_commit`); this app sends each on its own, as a
  plain psycopg2 app does.

The suite runs it under gunicorn's sync and gthread workers and takes the better:
    BENCH_STORE_DSN=... gunicorn -w 2 bench.baselines.bare_flask:app
"""

import datetime as dt
import hashlib
import hmac
import os
import threading
import uuid

import psycopg2
import psycopg2.extras
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
_local = threading.local()
COLUMNS = ("id, customer_id, name, backend, host, port, available_schemas, \"user\", "
           "sync_mode, sync_interval, created_at, updated_at")
CONNECTION = f"SELECT {COLUMNS} FROM connections WHERE id = %s AND customer_id = %s AND deleted_at IS NULL"
PAGE = 100
DATABASES = ("SELECT id, name, mysql_db, status, created_at FROM databases WHERE connection_id = %s "
             f"AND deleted_at IS NULL ORDER BY created_at, id LIMIT {PAGE + 1}")
AUDIT = ("INSERT INTO audit_entries (id, customer_id, key_id, operation_id, resource_type, resource_id, "
         "status, request_id, source_ip, idempotency_key, replayed, created_at) "
         "VALUES (%s, %s, %s, 'update_connection', 'connection', %s, 200, %s, %s, NULL, false, %s)")


def connection():
    if getattr(_local, "conn", None) is None:
        _local.conn = psycopg2.connect(os.environ["BENCH_STORE_DSN"])
        _local.conn.autocommit = True     # the project's key lookup and GET run outside a transaction
    return _local.conn


def cursor():
    return connection().cursor(cursor_factory=psycopg2.extras.RealDictCursor)


def owner_of_key(cur) -> tuple[str, str]:
    """(the customer the bearer key stands for, the key's id), or 401."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    key_id, _, secret = token.removeprefix("rmk_").partition(".")
    cur.execute("SELECT k.secret_hash, k.revoked_at, k.expires_at, c.id AS customer_id FROM management_keys k "
                "JOIN customers c ON c.id = k.customer_id WHERE k.key_id = %s LIMIT 1", (key_id,))
    row = cur.fetchone()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if row is None or not hmac.compare_digest(row["secret_hash"], digest) or row["revoked_at"] or (
            row["expires_at"] and row["expires_at"] <= dt.datetime.utcnow()):
        abort(401)
    return row["customer_id"], key_id


def dump(row: dict) -> dict:
    return {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}


@app.get("/v1/connections/<uuid:ident>")
def get_connection(ident):
    with cursor() as cur:
        customer, _ = owner_of_key(cur)
        cur.execute(CONNECTION, (str(ident), customer))
        found = cur.fetchone() or abort(404)
        cur.execute(DATABASES, (str(ident),))
        databases = [dump(row) for row in cur.fetchall()]
        count = len(databases)
        if count > PAGE:
            cur.execute("SELECT count(*) AS n FROM databases WHERE connection_id = %s AND deleted_at IS NULL",
                        (str(ident),))
            count = cur.fetchone()["n"]
    return jsonify({**dump(found), "databaseCount": count, "databases": databases[:PAGE]})


@app.patch("/v1/connections/<uuid:ident>")
def rename_connection(ident):
    name = (request.get_json(silent=True) or {}).get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        abort(400)
    with cursor() as cur:
        customer, key_id = owner_of_key(cur)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        cur.execute("BEGIN")
        try:
            cur.execute(CONNECTION + " FOR UPDATE", (str(ident), customer))
            cur.fetchone() or abort(404)
            cur.execute(f"UPDATE connections SET name = %s, updated_at = %s WHERE id = %s RETURNING {COLUMNS}",
                        (name, now, str(ident)))
            renamed = cur.fetchone()
            cur.execute(AUDIT, (str(uuid.uuid4()), customer, key_id, str(ident),
                                request.headers.get("X-Request-ID") or uuid.uuid4().hex, request.remote_addr, now))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return jsonify(dump(renamed))
