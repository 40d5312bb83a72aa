"""Benchmark an instance against querying MariaDB directly (not a test).

Builds a MariaDB source (default 1,000 users, 10,000 posts, 50,000 comments),
compiles its artifact with the real build, starts a real instance process and
measures:

  (a) latency (median, p95) of the contract's nested include query
      `posts { id author { name } comments(approved = true) { body } }`
      on the instance over HTTP, against the same JSON assembled straight from
      MariaDB with PyMySQL, measured in the same run: "batched" (one query for
      the posts, one for their authors IN (...), one for approved comments
      IN (...), joined in Python) and "naive" (per post, one query for its
      author and one for its comments);
  (b) snapshot load speed in rows per second (instance process and in-process);
  (c) with --readers, throughput of concurrent readers on one shared snapshot
      connection against a private deserialized copy per reader thread;
  (d) with --throughput SECONDS, requests/s with wrk (keep-alive, 1, 2 and 4
      connections, or --connections) on the three queries of issue 12, the page
      offset and the post id varied per request (random over the table), so an
      answer cache wins nothing there.

Usage: .venv/bin/python scripts/bench_instance.py [--users N --posts N --comments N]
       [--runs N] [--readers THREADS] [--throughput SECONDS] [--workers N] [--keep]
Needs MariaDB on 127.0.0.1:3306 (root, no password). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pymysql
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.build import build_artifact  # noqa: E402
from app.contracts.instance_settings import InstanceSettings, SourceSettings  # noqa: E402
from app.contracts.query_keys import make_query_key, write_keys_file  # noqa: E402
from app.engine.runtime import LocalProcessRuntime  # noqa: E402
from app.instance.snapshot import Snapshot  # noqa: E402
from app.query import QueryEngine  # noqa: E402
from app.sources import SourceCredentials, open_source  # noqa: E402

NESTED_QUERY = "posts { id author { name } comments(approved = true) { body } }"
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def create_source(name: str, users: int, posts: int, comments: int) -> None:
    """A blog database with deterministic rows."""
    conn = pymysql.connect(**MARIADB, autocommit=True)
    with conn.cursor() as c:
        c.execute(f"CREATE DATABASE `{name}`")
        c.execute(f"USE `{name}`")
        c.execute("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
                  "email VARCHAR(200))")
        c.execute("CREATE TABLE posts (id INT PRIMARY KEY, author_id INT NOT NULL, "
                  "title VARCHAR(200) NOT NULL, published TINYINT(1) NOT NULL, "
                  "FOREIGN KEY (author_id) REFERENCES users (id))")
        c.execute("CREATE TABLE comments (id INT PRIMARY KEY, post_id INT NOT NULL, "
                  "user_id INT NOT NULL, body TEXT NOT NULL, approved TINYINT(1) NOT NULL, "
                  "FOREIGN KEY (post_id) REFERENCES posts (id), "
                  "FOREIGN KEY (user_id) REFERENCES users (id))")
        _insert(c, "users", 3, ((i, f"user {i}", f"u{i}@example.com")
                                for i in range(1, users + 1)))
        _insert(c, "posts", 4, ((i, (i * 13) % users + 1, f"post {i}", i % 3 != 0)
                                for i in range(1, posts + 1)))
        _insert(c, "comments", 5, ((i, (i * 17) % posts + 1, (i * 31) % users + 1,
                                    f"comment {i} " + "x" * (20 + i % 80), i % 4 != 0)
                                   for i in range(1, comments + 1)))
    conn.close()


def _insert(cursor, table: str, width: int, rows) -> None:
    batch = []
    sql = f"INSERT INTO {table} VALUES ({', '.join(['%s'] * width)})"
    for row in rows:
        batch.append(row)
        if len(batch) == 5000:
            cursor.executemany(sql, batch)
            batch = []
    if batch:
        cursor.executemany(sql, batch)


def baseline_batched(conn) -> list[dict]:
    """The nested query's answer from MariaDB: three queries, joined in Python."""
    with conn.cursor() as c:
        c.execute("SELECT id, author_id FROM posts ORDER BY id LIMIT 1000")
        posts = c.fetchall()
        author_ids = sorted({p[1] for p in posts})
        c.execute(f"SELECT id, name FROM users WHERE id IN ({', '.join(['%s'] * len(author_ids))})",
                  author_ids)
        names = dict(c.fetchall())
        post_ids = [p[0] for p in posts]
        c.execute("SELECT post_id, body FROM comments WHERE approved = 1 AND post_id IN "
                  f"({', '.join(['%s'] * len(post_ids))}) ORDER BY id", post_ids)
        comments: dict[int, list] = {}
        for post_id, body in c.fetchall():
            comments.setdefault(post_id, []).append({"body": body})
    return [{"id": pid, "author": {"name": names[aid]}, "comments": comments.get(pid, [])}
            for pid, aid in posts]


def baseline_naive(conn) -> list[dict]:
    """The same answer the per-row way: two queries per post."""
    out = []
    with conn.cursor() as c:
        c.execute("SELECT id, author_id FROM posts ORDER BY id LIMIT 1000")
        for pid, aid in c.fetchall():
            c.execute("SELECT name FROM users WHERE id = %s", (aid,))
            name = c.fetchone()[0]
            c.execute("SELECT body FROM comments WHERE post_id = %s AND approved = 1 "
                      "ORDER BY id", (pid,))
            out.append({"id": pid, "author": {"name": name},
                        "comments": [{"body": b} for (b,) in c.fetchall()]})
    return out


def timed(fn, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def readers_throughput(snapshot: Snapshot, engine: QueryEngine, threads: int,
                       seconds: float, private_copies: bool) -> float:
    """Queries per second with `threads` readers on a shared or private connections."""
    image = snapshot.connection.serialize() if private_copies else None
    connections = []
    for _ in range(threads):
        if private_copies:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            conn.deserialize(image)
            connections.append(conn)
        else:
            connections.append(snapshot.connection)
    count = [0] * threads
    stop = threading.Event()

    def run(n):
        while not stop.is_set():
            engine.execute(connections[n], NESTED_QUERY)
            count[n] += 1

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    if private_copies:
        for conn in connections:
            conn.close()
    return sum(count) / seconds


THROUGHPUT_QUERIES = {
    # name: (query template, what %d is varied over: "offset" or "id")
    "50 published posts, id + title":
        ("posts(published = true) { id title LIMIT 50 OFFSET %d }", "offset"),
    "+ author name + approved comments":
        ("posts(published = true) { id title author { name } comments(approved = true) { body }"
         " LIMIT 50 OFFSET %d }", "offset"),
    "one post by id, nested":
        ("posts(id = %d) { id title author { name } comments { body } }", "id"),
}

_WRK_SCRIPT = """
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  return wrk.format(nil, "/query", nil, string.format(%(template)s, math.random(%(low)d, %(high)d)))
end
"""


def instance_cpu_seconds(pid: int) -> float:
    """CPU time used so far by an instance's master and its processes (readers, writer)."""
    total = 0.0
    master = psutil.Process(pid)
    for process in [master, *master.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def wrk_throughput(url: str, key: str, template: str, low: int, high: int,
                   connections: int, seconds: float, pid: int) -> tuple[float, int, float]:
    """(requests/s, non-2xx responses, instance CPU ms per request) of wrk with one varied query.

    CPU per request does not depend on what else runs on the machine, requests/s does.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % {"key": key, "template": json.dumps(template),
                                    "low": low, "high": high})
    cpu_before = instance_cpu_seconds(pid)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s",
                              script.name, url], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(script.name)
    cpu = instance_cpu_seconds(pid) - cpu_before
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(errors.group(1)) if errors else 0, cpu * 1000 / max(count, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=10000)
    parser.add_argument("--comments", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--readers", type=int, default=0,
                        help="also compare concurrent readers with this many threads")
    parser.add_argument("--throughput", type=int, default=0, metavar="SECONDS",
                        help="also measure requests/s with wrk, this long per figure")
    parser.add_argument("--connections", default="1,2,4",
                        help="wrk connection counts for --throughput (default 1,2,4)")
    parser.add_argument("--workers", type=int, default=None,
                        help="the instance's reader processes (default: its own default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="the instance's threads per reader (default: its own default)")
    parser.add_argument("--keep", action="store_true", help="keep the source database")
    parser.add_argument("--reuse", metavar="NAME",
                        help="use this kept source database (from --keep) instead of a new one")
    args = parser.parse_args()

    name = args.reuse or f"rx_bench_{secrets.token_hex(4)}"
    total_rows = args.users + args.posts + args.comments
    print(f"source: MariaDB database {name}: {args.users} users, {args.posts} posts, "
          f"{args.comments} comments")
    if args.reuse:
        args.keep = True
    else:
        create_source(name, args.users, args.posts, args.comments)
    credentials = SourceCredentials(backend="mysql", host=MARIADB["host"], port=MARIADB["port"],
                                    user="root", password="", schema=name)
    runtime = LocalProcessRuntime(tempfile.mkdtemp(prefix="rx_bench_"))
    handle = None
    try:
        artifact, _log = build_artifact(credentials)

        # (b) in-process load speed, and the snapshot for the readers comparison.
        with open_source(credentials) as source:
            snapshot = Snapshot.load(artifact, source)
        engine = QueryEngine(artifact)

        keys_path = os.path.join(runtime.base_dir, "keys.json")
        os.makedirs(runtime.base_dir, exist_ok=True)
        secret = secrets.token_urlsafe(32)
        write_keys_file(keys_path, secret, {"bench": None})
        options = {}
        if args.workers is not None and "workers" in InstanceSettings.__dataclass_fields__:
            options["workers"] = args.workers
        if args.threads is not None:
            options["threads"] = args.threads
        settings = InstanceSettings(
            database_id="bench", artifact_path="-", keys_file="-",
            source=SourceSettings("mysql", MARIADB["host"], MARIADB["port"], "root", name),
            sync_interval_seconds=3600, memory_limit_mb=2048, **options)
        handle = runtime.start("bench", settings, artifact, "", keys_path)
        deadline = time.monotonic() + 120
        while not (health := runtime.health(handle)).get("serving"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the instance did not load: {health}")
            time.sleep(0.1)

        session = requests.Session()
        headers = {"Authorization": f"Bearer {make_query_key(secret, 'bench')}",
                   "Content-Type": "text/plain"}

        def instance_query():
            response = session.post(f"{handle.endpoint_url}/query", data=NESTED_QUERY,
                                    headers=headers, timeout=60)
            response.raise_for_status()
            return response.json()

        conn = pymysql.connect(**MARIADB, database=name, autocommit=True)
        answer = instance_query()
        if answer != baseline_batched(conn) or answer != baseline_naive(conn):
            raise SystemExit("the instance and the baselines disagree")
        nested_comments = sum(len(p["comments"]) for p in answer)

        results = {
            "instance (HTTP)": timed(instance_query, args.runs),
            "query engine in-process": timed(
                lambda: json.dumps(engine.execute(snapshot.connection, NESTED_QUERY)), args.runs),
            "MariaDB batched (3 queries)": timed(lambda: json.dumps(baseline_batched(conn)),
                                                 args.runs),
            "MariaDB naive (2 per row)": timed(lambda: json.dumps(baseline_naive(conn)),
                                               max(5, args.runs // 5)),
        }
        base = statistics.median(results["MariaDB batched (3 queries)"])
        print(f"\n(a) {NESTED_QUERY}\n    answer: {len(answer)} posts, {nested_comments} "
              f"comments; {args.runs} runs each (naive: fewer)\n")
        print(f"    {'path':30} {'median ms':>10} {'p95 ms':>10} {'vs batched':>11}")
        for label, samples in results.items():
            median = statistics.median(samples)
            print(f"    {label:30} {median:10.2f} {p95(samples):10.2f} {median / base:10.2f}x")

        print(f"\n(b) snapshot load ({total_rows} rows)")
        print(f"    instance process: {health['loadRowsPerSecond']:,.0f} rows/s, "
              f"{health['snapshotBytes'] / 2**20:.1f} MiB")
        print(f"    in-process:       {snapshot.rows_per_second:,.0f} rows/s "
              f"({snapshot.load_seconds:.2f} s)")
        if args.readers:
            print(f"\n(c) concurrent readers ({args.readers} threads, nested query, in-process)")
            for private in (False, True):
                qps = readers_throughput(snapshot, engine, args.readers, 5.0, private)
                label = ("private deserialized copy each" if private
                         else "one shared connection")
                print(f"    {label:32} {qps:8.1f} queries/s")
            single = readers_throughput(snapshot, engine, 1, 5.0, False)
            print(f"    {'(one thread, for reference)':32} {single:8.1f} queries/s")
        if args.throughput:
            if shutil.which("wrk") is None:
                raise SystemExit("--throughput needs wrk on the PATH")
            counts = [int(n) for n in args.connections.split(",")]
            print(f"\n(d) requests/s with wrk, {args.throughput:g} s per figure, varied per "
                  f"request (connections {', '.join(map(str, counts))})")
            key = make_query_key(secret, "bench")
            published = sum(1 for i in range(1, args.posts + 1) if i % 3 != 0)
            figures = {}
            for label, (template, varied) in THROUGHPUT_QUERIES.items():
                low, high = (1, args.posts) if varied == "id" else (0, max(published - 50, 0))
                row, cpu_row = [], []
                for count in counts:
                    rate, errors, cpu_ms = wrk_throughput(handle.endpoint_url, key, template, low,
                                                          high, count, args.throughput,
                                                          handle.pid)
                    if errors:
                        raise SystemExit(f"{label}: {errors} non-2xx answers at c={count}")
                    row.append(rate)
                    cpu_row.append(round(cpu_ms, 3))
                figures[label] = {"requestsPerSecond": row, "cpuMsPerRequest": cpu_row}
                print(f"    {label:36} " + " ".join(f"{rate:7,.0f}" for rate in row)
                      + "  req/s;  CPU ms/req " + " ".join(f"{ms:5.2f}" for ms in cpu_row))
            print(json.dumps({"throughput": figures, "connections": counts}))
        conn.close()
        snapshot.close()
    finally:
        if handle is not None:
            runtime.stop(handle)
        if not args.keep:
            admin = pymysql.connect(**MARIADB, autocommit=True)
            with admin.cursor() as c:
                c.execute(f"DROP DATABASE IF EXISTS `{name}`")
            admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
