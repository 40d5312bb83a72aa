"""Benchmark change data capture lag: source commit to visible in an instance's /query (not a test).

For each backend (MariaDB binlog, PostgreSQL logical decoding) it starts a server with
replication on from a temporary data dir (tests/servers.py), a real instance process in
that mode, and then, for each rate, a writer that commits inserts into `events` at that
many row changes per second (one commit every 10 ms carrying rate/100 rows) for
`--seconds`. A prober asks the instance `events { id ORDER BY id DESC LIMIT 1 }` in a
loop; a commit's lag is the time from its COMMIT returning to the first answer that shows
its last row. Prints a table and a JSON document (p50, p99, max lag in ms per backend and
rate, the rate achieved, and the instance's apply counters).

Usage: .venv/bin/python scripts/bench_cdc.py [--rates 100,1000,5000] [--seconds 10]
       [--backends mysql,postgres]
Needs mariadb-install-db/mariadbd and PostgreSQL 15 binaries (REFLEXDB_TEST_POSTGRES_BIN).
Results and the command: docs/cdc.md ("Lag").
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pymysql
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.build.compile import compile_artifact  # noqa: E402
from app.contracts.instance_settings import InstanceSettings, SourceSettings  # noqa: E402
from app.contracts.query_keys import make_query_key, write_keys_file  # noqa: E402
from app.engine.runtime import LocalProcessRuntime  # noqa: E402
from app.sources import open_source  # noqa: E402
from tests import servers  # noqa: E402

TICK = 0.010   # one commit every 10 ms
PROBE = "events { id ORDER BY id DESC LIMIT 1 }"


def connect(local, schema):
    server = local.server
    if server.backend == "mysql":
        return pymysql.connect(**server.connect_args(), autocommit=True, database=schema)
    connection = psycopg2.connect(**server.connect_args())
    connection.autocommit = True
    # The test server runs with synchronous_commit=off (speed); a commit is then flushed
    # (and decoded) up to 3 x wal_writer_delay later. Production's default is on.
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = on")
    return connection


def create_schema(local) -> str:
    schema = f"rx_bench_{secrets.token_hex(3)}"
    if local.server.backend == "mysql":
        admin = pymysql.connect(**local.server.connect_args(), autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{schema}`")
            cursor.execute(f"CREATE TABLE `{schema}`.events (id BIGINT PRIMARY KEY, "
                           f"v INT NOT NULL, note VARCHAR(40))")
        admin.close()
    else:
        admin = connect(local, None)
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
            cursor.execute(f'CREATE TABLE "{schema}".events (id bigint PRIMARY KEY, '
                           f'v int NOT NULL, note varchar(40))')
        admin.close()
    return schema


def start_instance(runtime, local, schema, work: Path):
    credentials = local.server.credentials(schema)
    with open_source(credentials) as source:
        artifact = compile_artifact(source.introspect())
    database_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32)
    keys = str(work / f"keys-{database_id}.json")
    write_keys_file(keys, secret, {"bench": None})
    settings = InstanceSettings(
        database_id=database_id, artifact_path="-", keys_file="-",
        source=SourceSettings(backend=credentials.backend, host=credentials.host,
                              port=credentials.port, user=credentials.user,
                              schema=credentials.schema, database=credentials.database),
        sync_mode="binlog" if credentials.backend == "mysql" else "logical",
        sync_interval_seconds=3600, instance_id=str(uuid.uuid4()), binlog_server_id=4242,
        memory_limit_mb=1024, threads=4)
    handle = runtime.start(database_id, settings, artifact, credentials.password, keys)
    deadline = time.monotonic() + 60
    while not runtime.health(handle).get("serving"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the instance did not load: {runtime.health(handle)}")
        time.sleep(0.1)
    return handle, make_query_key(secret, "bench")


def run_rate(local, schema, handle, key, rate: int, seconds: float, first_id: int) -> dict:
    """Write `rate` inserts/s for `seconds`; the lag of each commit as the prober saw it."""
    per_tick = max(1, round(rate * TICK))
    commits: list[tuple[int, float]] = []      # (last id of the commit, commit time)
    seen: list[tuple[int, float]] = []         # (highest id visible, when)
    stop = threading.Event()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "text/plain"}

    def probe():
        while not stop.is_set():
            response = session.post(f"{handle.endpoint_url}/query", data=PROBE,
                                    headers=headers, timeout=30)
            now = time.perf_counter()
            rows = response.json() if response.status_code == 200 else []
            if rows:
                seen.append((rows[0]["id"], now))

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    connection = connect(local, schema)
    table = f"`{schema}`.events" if local.server.backend == "mysql" else f'"{schema}".events'
    next_id = first_id
    start = time.perf_counter()
    ticks = int(seconds / TICK)
    with connection.cursor() as cursor:
        for tick in range(ticks):
            due = start + tick * TICK
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            values = [(next_id + i, i, "bench") for i in range(per_tick)]
            next_id += per_tick
            cursor.execute("BEGIN")
            cursor.executemany(f"INSERT INTO {table} (id, v, note) VALUES (%s, %s, %s)", values)
            cursor.execute("COMMIT")
            commits.append((next_id - 1, time.perf_counter()))
    elapsed = time.perf_counter() - start
    deadline = time.monotonic() + 120
    while (not seen or seen[-1][0] < next_id - 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    prober.join(30)
    connection.close()
    lags = []
    position = 0
    for last_id, committed in commits:
        while position < len(seen) and (seen[position][0] < last_id or seen[position][1] < committed):
            position += 1
        if position < len(seen):
            lags.append((seen[position][1] - committed) * 1000)
    lags.sort()
    achieved = (next_id - first_id) / elapsed
    return {"rate": rate, "achieved": round(achieved), "commits": len(commits),
            "measured": len(lags),
            "p50_ms": round(statistics.median(lags), 1) if lags else None,
            "p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1) if lags else None,
            "max_ms": round(lags[-1], 1) if lags else None,
            "next_id": next_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,1000,5000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backends", default="mysql,postgres")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    work = servers.temporary_root("rx_bench_cdc_")
    runtime = LocalProcessRuntime(work / "instances")
    results = []
    for backend in args.backends.split(","):
        local = (servers.BinlogMariaDB(work / "mariadb") if backend == "mysql"
                 else servers.LogicalPostgres(servers.temporary_root("rx_bench_pg_")))
        handle = None
        try:
            local.start()
            schema = create_schema(local)
            handle, key = start_instance(runtime, local, schema, work)
            # Warm-up (first connections, type lookups, plan cache), not measured.
            next_id = run_rate(local, schema, handle, key, 100, 1.0, 1)["next_id"]
            for rate in rates:
                result = run_rate(local, schema, handle, key, rate, args.seconds, next_id)
                next_id = result.pop("next_id")
                health = runtime.health(handle)
                result.update(backend=backend, mode=health["effectiveSyncMode"],
                              eventsApplied=health["eventsApplied"],
                              streamReloads=health["streamReloads"])
                results.append(result)
                print(f"{backend:8} {rate:>6}/s  achieved {result['achieved']:>6}/s  "
                      f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                      f"max {result['max_ms']} ms", file=sys.stderr, flush=True)
        finally:
            if handle is not None:
                runtime.stop(handle)
            local.destroy()
    print()
    print("| backend | rate (changes/s) | achieved | p50 lag (ms) | p99 lag (ms) | max (ms) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} ({r['mode']}) | {r['rate']:,} | {r['achieved']:,} | "
              f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |")
    print()
    print(json.dumps({"tick_ms": TICK * 1000, "seconds": args.seconds, "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
