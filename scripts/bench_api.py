"""Benchmark the control plane's request throughput by Flask thread-pool size (not a test).

Starts gunicorn (the project's config, PostgreSQL store) once per setting,
loads it with wrk on `GET /v1/connections/{id}` (a key check plus three selects)
and prints requests/second as ratios against Connexion's default pool of 10
threads, measured in the same run.

    .venv/bin/python scripts/bench_api.py [--threads 1 2 4 10] [--workers 2] [--seconds 10]

Needs wrk (`apt-get install wrk`) and PostgreSQL on 127.0.0.1:5432 (trust auth).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
DB = "reflexdb_bench"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
BASELINE_THREADS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database() -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
        cur.execute(f"CREATE DATABASE {DB}")
    conn.close()


def reflexdb(env, *args) -> str:
    return subprocess.run([str(Path(sys.executable).parent / "reflexdb"), *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def serve(env, threads: int, workers: int):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        cwd=ROOT, env={**env, "REFLEXDB_THREADS": str(threads), "REFLEXDB_ACCESS_LOG": ""},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(150):
        try:
            if requests.get(f"{base}/health", timeout=1).ok:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def wrk(url: str, key: str, seconds: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {key}",
                          url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise SystemExit(f"{non_2xx.group(1)} requests failed:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, BASELINE_THREADS])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    fresh_database()
    # One key makes every request: its rate limit would answer most of them 429.
    env = {**os.environ, "DATABASE_URL": URL, "REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode(),
           "REFLEXDB_DATA_DIR": tempfile.mkdtemp(), "REFLEXDB_RATE_LIMIT": "off"}
    reflexdb(env, "migrate")
    key = json.loads(reflexdb(env, "customers", "create", "--name", "Bench"))["key"]
    threads = sorted(set(args.threads) | {BASELINE_THREADS})
    results = {}
    for count in threads:
        proc, base = serve(env, count, args.workers)
        try:
            conn = requests.post(f"{base}/connections", headers={"Authorization": f"Bearer {key}"}, json={
                "name": f"bench-{count}", "mysqlHost": "db", "availableSchemas": ["s"], "mysqlUser": "u",
                "mysqlPassword": "p", "instance": {"name": "d", "mysqlDb": "s"}}, timeout=10).json()
            url = f"{base}/connections/{conn['id']}"
            wrk(url, key, 2, args.connections)                 # warm-up
            results[count] = wrk(url, key, args.seconds, args.connections)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    baseline = results[BASELINE_THREADS]
    print(f"GET /v1/connections/{{id}}, {args.workers} workers, wrk {args.connections} connections, "
          f"{args.seconds}s each")
    print(f"{'threads/worker':>15} {'req/s':>9} {'vs 10 threads':>14}")
    for count in threads:
        print(f"{count:>15} {results[count]:>9.0f} {results[count] / baseline:>13.2f}x")


if __name__ == "__main__":
    main()
