"""The control plane's baseline: bare Flask + psycopg2, the same key lookup and SQL, no framework.

GET /v1/connections/<id> (key check, the connection, its database count and first 20
databases) and PATCH (rename, under the row lock), on the project's store. The suite runs it
under gunicorn's sync and gthread workers and takes the better:
    BENCH_STORE_DSN=... gunicorn -w 2 bench.baselines.bare_flask:app
"""

import datetime as dt
import hashlib
import hmac
import os
import threading

import psycopg2
import psycopg2.extras
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
_local = threading.local()
CONNECTION = ("SELECT id, customer_id, name, backend, host, port, available_schemas, \"user\", "
              "sync_mode, sync_interval, created_at, updated_at FROM connections "
              "WHERE id = %s AND customer_id = %s AND deleted_at IS NULL")
DATABASES = ("SELECT id, name, mysql_db, status, created_at FROM databases WHERE connection_id = %s "
             "AND deleted_at IS NULL ORDER BY created_at, id LIMIT 20")


def cursor():
    if getattr(_local, "conn", None) is None:
        _local.conn = psycopg2.connect(os.environ["BENCH_STORE_DSN"])
    return _local.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)


def customer_of_key(cur) -> str:
    """The customer the bearer key stands for (management_keys joined with customers), or 401."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    key_id, _, secret = token.removeprefix("rmk_").partition(".")
    cur.execute("SELECT k.secret_hash, k.revoked_at, k.expires_at, c.id AS customer_id FROM management_keys k "
                "JOIN customers c ON c.id = k.customer_id WHERE k.key_id = %s", (key_id,))
    row = cur.fetchone()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if row is None or not hmac.compare_digest(row["secret_hash"], digest) or row["revoked_at"] or (
            row["expires_at"] and row["expires_at"] <= dt.datetime.utcnow()):
        abort(401)
    return row["customer_id"]


def dump(row: dict) -> dict:
    return {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}


@app.get("/v1/connections/<uuid:ident>")
def get_connection(ident):
    with cursor() as cur:
        cur.execute(CONNECTION, (str(ident), customer_of_key(cur)))
        connection = cur.fetchone() or abort(404)
        cur.execute("SELECT count(*) AS n FROM databases WHERE connection_id = %s AND deleted_at IS NULL",
                    (str(ident),))
        count = cur.fetchone()["n"]
        cur.execute(DATABASES, (str(ident),))
        databases = [dump(row) for row in cur.fetchall()]
    _local.conn.rollback()
    return jsonify({**dump(connection), "databaseCount": count, "databases": databases})


@app.patch("/v1/connections/<uuid:ident>")
def rename_connection(ident):
    name = (request.get_json(silent=True) or {}).get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        abort(400)
    with cursor() as cur:
        customer = customer_of_key(cur)
        cur.execute(CONNECTION + " FOR UPDATE", (str(ident), customer))
        cur.fetchone() or abort(404)
        cur.execute("UPDATE connections SET name = %s, updated_at = now() WHERE id = %s "
                    "RETURNING id, customer_id, name, backend, host, port, available_schemas, \"user\", "
                    "sync_mode, sync_interval, created_at, updated_at", (name, str(ident)))
        connection = cur.fetchone()
    _local.conn.commit()
    return jsonify(dump(connection))
