"""CPU per request of the control plane's ASGI app, two checkouts side by side (not a test).

Where `scripts/bench_api.py` measures whole servers under wrk, this drives the app in process
(no HTTP server, no concurrency): each checkout's app runs in a process of its own, and the two
take turns serving short slices of requests (`--requests` each), so a change of the machine's
speed (this project's benchmark hosts share their cores) hits both sides of a pair alike. It
prints each side's median CPU time per request and the median of the per-pair ratios B/A:
a ratio of 0.95 is 5% less CPU per request. What it leaves out (uvicorn's HTTP parsing, the
socket writes, contention between threads) is the same for both sides.

    git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python scripts/bench_app_cpu.py /tmp/before .        [--method GET PATCH]
        [--requests 200] [--pairs 30] [--database reflexdb_app_cpu]

Needs PostgreSQL on 127.0.0.1:5432 (trust auth); the database is dropped and made afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# The serving side: `bench_app_cpu.py --serve METHOD`, run with PYTHONPATH at one checkout.

async def _serve(method: str) -> None:
    from app import create_app

    app = create_app()
    key, connection_id = os.environ["BENCH_KEY"], os.environ["BENCH_CONNECTION"]
    path = f"/v1/connections/{connection_id}"
    counter = 0

    async def one() -> None:
        nonlocal counter
        counter += 1
        body = json.dumps({"name": f"bench-{os.getpid()}-{counter}"}).encode() if method == "PATCH" else b""
        headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode())]
        if body:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8080), "state": {}, "extensions": {}}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        statuses = []

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.Event().wait()     # the client stays connected

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise SystemExit(f"{method} {path} answered {statuses}")

    for _ in range(300):                     # warm: the middleware stack, the pools, the caches
        await one()
    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        started = time.process_time()
        for _ in range(count):
            await one()
        print((time.process_time() - started) / count * 1e6, flush=True)


# ---------------------------------------------------------------------------------------------
# The driving side.

def _prepare(database: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from bench.common import create_pg_database  # the suite's: dropped (forced), made afresh

    create_pg_database(database)
    env = {**os.environ, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
           "REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode(), "REFLEXDB_DATA_DIR": tempfile.mkdtemp(),
           "REFLEXDB_RATE_LIMIT": "off", "PYTHONPATH": str(ROOT)}
    reflexdb = str(Path(sys.executable).parent / "reflexdb")
    subprocess.run([reflexdb, "migrate"], env=env, check=True, capture_output=True)
    created = subprocess.run([reflexdb, "customers", "create", "--name", "Bench"], env=env, check=True,
                             capture_output=True, text=True)
    env["BENCH_KEY"] = json.loads(created.stdout)["key"]
    made = subprocess.run([sys.executable, "-c", _CREATE_CONNECTION], env=env, check=True,
                          capture_output=True, text=True)
    env["BENCH_CONNECTION"] = made.stdout.strip()
    return env


_CREATE_CONNECTION = """
import os, warnings
warnings.filterwarnings("ignore")
from starlette.testclient import TestClient
from app import create_app
answer = TestClient(create_app()).post(
    "/v1/connections", headers={"Authorization": "Bearer " + os.environ["BENCH_KEY"]},
    json={"name": "bench", "mysqlHost": "db", "availableSchemas": ["s"], "mysqlUser": "u",
          "mysqlPassword": "p", "instance": {"name": "d", "mysqlDb": "s"}})
answer.raise_for_status()
print(answer.json()["id"])
"""


def _compare(env: dict, checkouts: list[Path], method: str, requests: int, pairs: int) -> str:
    processes = []
    for checkout in checkouts:
        process = subprocess.Popen([sys.executable, __file__, "--serve", method], cwd=checkout,
                                   env={**env, "PYTHONPATH": str(checkout)}, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"{checkout}: the app did not start (run it by hand to see why)")
        processes.append(process)
    samples: list[list[float]] = [[], []]
    try:
        for pair in range(pairs):
            for side in ((0, 1) if pair % 2 == 0 else (1, 0)):
                processes[side].stdin.write(f"{requests}\n")
                processes[side].stdin.flush()
                samples[side].append(float(processes[side].stdout.readline()))
    finally:
        for process in processes:
            process.stdin.close()
            process.wait(timeout=30)
    ratios = [b / a for a, b in zip(*samples, strict=True)]
    return (f"{method:<6} A {statistics.median(samples[0]):7.0f} us   B {statistics.median(samples[1]):7.0f} us"
            f"   B/A {statistics.median(ratios):.3f} (pairs {min(ratios):.2f}-{max(ratios):.2f})")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="checkout A (the base of the ratio)")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument("--method", nargs="+", default=["GET", "PATCH"], choices=["GET", "PATCH"])
    parser.add_argument("--requests", type=int, default=200, help="requests per slice")
    parser.add_argument("--pairs", type=int, default=30, help="slices per side, taken in turns")
    parser.add_argument("--database", default="reflexdb_app_cpu")
    args = parser.parse_args()
    env = _prepare(args.database)
    print(f"A = {args.a.resolve()}, B = {args.b.resolve()}; {args.pairs} pairs of {args.requests} requests")
    for method in args.method:
        print(_compare(env, [args.a.resolve(), args.b.resolve()], method, args.requests, args.pairs))


if __name__ == "__main__":
    main()
