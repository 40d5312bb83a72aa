"""Benchmark how long an instance takes to start and to stop (not a test).

Builds a small MariaDB source (default 200 users, 1,000 posts, 3,000 comments,
like the runtime tests), compiles its artifact with the real build, then starts
and stops instances through `LocalProcessRuntime` several times and reports,
per code tree, the median and spread of:

  up       `runtime.start()`: from the call to the first 200 on /health;
  serving  from the call to the first /health with `serving` true (the first
           snapshot loaded and published), polled every 10 ms here;
  cpu      the CPU time (user + system) the master, its readers and its writer
           had spent by then: steadier than wall times on a shared machine;
  stop     `runtime.stop()`: SIGTERM to the master until it, its readers and
           its writer are gone.

With `--tree DIR` (repeatable) the instances run the code of each tree
(`PYTHONPATH` and working directory), alternated start by start, so a
baseline checkout (e.g. `git archive <commit> | tar -x -C /tmp/base`) and this
one are measured in the same run on the same load.

Usage: .venv/bin/python scripts/bench_instance_start.py [--runs N] [--tree DIR ...]
       [--workers N] [--users N --posts N --comments N]
Needs MariaDB on 127.0.0.1:3306 (root, no password).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.build import build_artifact  # noqa: E402
from app.contracts.instance_settings import InstanceSettings, SourceSettings  # noqa: E402
from app.contracts.query_keys import write_keys_file  # noqa: E402
from app.engine import runtime as runtime_module  # noqa: E402
from app.engine.runtime import LocalProcessRuntime  # noqa: E402
from app.sources import SourceCredentials  # noqa: E402

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def create_source(name: str, users: int, posts: int, comments: int) -> None:
    """A blog database with deterministic rows."""
    conn = pymysql.connect(**MARIADB, autocommit=True)
    with conn.cursor() as c:
        c.execute(f"CREATE DATABASE `{name}`")
        c.execute(f"USE `{name}`")
        c.execute("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL)")
        c.execute("CREATE TABLE posts (id INT PRIMARY KEY, author_id INT NOT NULL, "
                  "title VARCHAR(200) NOT NULL, FOREIGN KEY (author_id) REFERENCES users (id))")
        c.execute("CREATE TABLE comments (id INT PRIMARY KEY, post_id INT NOT NULL, "
                  "body TEXT NOT NULL, FOREIGN KEY (post_id) REFERENCES posts (id))")
        c.executemany("INSERT INTO users VALUES (%s, %s)",
                      [(i, f"user {i}") for i in range(1, users + 1)])
        c.executemany("INSERT INTO posts VALUES (%s, %s, %s)",
                      [(i, i % users + 1, f"post {i}") for i in range(1, posts + 1)])
        c.executemany("INSERT INTO comments VALUES (%s, %s, %s)",
                      [(i, i % posts + 1, f"comment {i} " + "x" * 200)
                       for i in range(1, comments + 1)])
    conn.close()


def drop_source(name: str) -> None:
    conn = pymysql.connect(**MARIADB, autocommit=True)
    with conn.cursor() as c:
        c.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def one_start(runtime: LocalProcessRuntime, tree: Path, settings: InstanceSettings, artifact,
              keys_path: str) -> tuple[float, float, float, float]:
    """(up, serving, cpu, stop) seconds of one instance run from `tree`."""
    runtime_module.PROJECT_ROOT = tree
    database_id = f"start-{secrets.token_hex(3)}"
    started = time.monotonic()
    handle = runtime.start(database_id, settings, artifact, "", keys_path)
    up = time.monotonic() - started
    deadline = started + 60
    while not runtime.health(handle).get("serving"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the instance did not serve: {runtime.health(handle)}")
        time.sleep(0.01)
    serving = time.monotonic() - started
    master = psutil.Process(handle.pid)
    cpu = sum(sum(p.cpu_times()[:2]) for p in [master, *master.children()])
    stopping = time.monotonic()
    runtime.stop(handle)
    stop = time.monotonic() - stopping
    return up, serving, cpu, stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="starts per tree")
    parser.add_argument("--tree", action="append", type=Path,
                        help="a project tree whose code the instances run (default: this one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--comments", type=int, default=3000)
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [runtime_module.PROJECT_ROOT])]

    name = f"rx_bench_{secrets.token_hex(4)}"
    create_source(name, args.users, args.posts, args.comments)
    try:
        credentials = SourceCredentials(backend="mysql", host=MARIADB["host"],
                                        port=MARIADB["port"], user="root", password="",
                                        schema=name)
        artifact, _log = build_artifact(credentials)
        base = tempfile.mkdtemp(prefix="rx_bench_start_")
        runtime = LocalProcessRuntime(base)
        keys_path = os.path.join(base, "keys.json")
        write_keys_file(keys_path, secrets.token_urlsafe(32), {"bench": None})
        settings = InstanceSettings(
            database_id="bench", artifact_path="-", keys_file="-",
            source=SourceSettings("mysql", MARIADB["host"], MARIADB["port"], "root", name),
            sync_interval_seconds=3600, memory_limit_mb=512, workers=args.workers)
        results: dict[Path, list[tuple[float, float, float, float]]] = {t: [] for t in trees}
        one_start(runtime, trees[0], settings, artifact, keys_path)   # warm the page cache
        for _ in range(args.runs):
            for tree in trees:
                results[tree].append(one_start(runtime, tree, settings, artifact, keys_path))
        print(f"{args.runs} starts per tree, {args.workers} readers, "
              f"{args.users + args.posts + args.comments} rows; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'tree':30} {'up ms':>16} {'serving ms':>16} {'cpu ms':>16} {'stop ms':>16}"
              f"   (median, min-max)")
        for tree, rows in results.items():
            cells = []
            for column in zip(*rows, strict=True):
                ms = sorted(x * 1000 for x in column)
                cells.append(f"{statistics.median(ms):6.0f} {ms[0]:4.0f}-{ms[-1]:<4.0f}")
            print(f"{str(tree)[-30:]:30} " + " ".join(f"{c:>16}" for c in cells))
    finally:
        drop_source(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
