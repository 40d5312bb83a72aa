"""Benchmark the control plane against a bare Flask + psycopg2 app doing the same work (not a test).

Starts each server in turn on a fresh PostgreSQL database, loads it with wrk and prints
requests/second for `GET /v1/connections/{id}` and `PATCH /v1/connections/{id}` (a rename,
a new name on every request) at each connection count, with the project's ratio to the
bare app's best worker class, measured in the same run. Servers are alternated per round;
each figure is the median over the rounds.

- `project`: gunicorn with the project's gunicorn.conf.py (extra settings with `--env`).
- `bare-sync`, `bare-gthread`: the benchmark suite's baseline, bench/baselines/bare_flask.py,
  a Flask app sending the statements the project sends (the key lookup, the same SQL, the
  rename's audit entry; tests/bench/test_bare_baseline.py keeps the two in step), one psycopg2
  connection per thread, under gunicorn's sync worker and its gthread worker (2 threads).

    .venv/bin/python scripts/bench_api.py [--connections 1 8 32] [--seconds 8] [--rounds 1]
        [--servers project bare-sync bare-gthread] [--env REFLEXDB_THREADS=2 ...] [--json out.json]

Needs wrk (`apt-get install wrk`) and PostgreSQL on 127.0.0.1:5432 (trust auth).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
DB = "reflexdb_bench"      # --database: another name, so two runs on one host do not share it
BARE = ("bare-sync", "bare-gthread")

# Every request renames the connection; each wrk thread numbers its own names.
PATCH_LUA = '''
local counter = 0
local prefix = ""
function setup(thread) thread:set("prefix", tostring(math.random(100000000))) end
function init(args) wrk.headers["Content-Type"] = "application/json" end
function request()
  counter = counter + 1
  return wrk.format("PATCH", nil, nil,
                    '{"name":"bench-' .. prefix .. '-' .. counter .. '"}')
end
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_database(name: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()


def reflexdb(env, *args) -> str:
    return subprocess.run([str(Path(sys.executable).parent / "reflexdb"), *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def start(server: str, env: dict, workers: int, before: Path | None = None,
          extra: tuple[str, ...] = (), database: str = DB):
    port = free_port()
    if server in ("project", "before"):
        root = before if server == "before" else ROOT
        argv = [sys.executable, "-m", "gunicorn", "--config", str(root / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{port}", "--workers", str(workers), *extra]
        cwd, health = root, "/v1/health"
        env = {**env, "PYTHONPATH": str(root)}    # that checkout's `app`, not the installed one
    else:
        worker_class = server.removeprefix("bare-")
        # Only gthread gets threads: gunicorn runs a sync worker given --threads > 1 as gthread.
        threads = ["--threads", "2"] if worker_class == "gthread" else []
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                "--worker-class", worker_class, *threads, "bench.baselines.bare_flask:app"]
        cwd, health = ROOT, None
    dsn = f"dbname={database} user=postgres host=127.0.0.1"
    proc = subprocess.Popen(argv, cwd=cwd, env={**env, "BENCH_STORE_DSN": dsn},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}{health or '/'}", timeout=10)
            return proc, f"{base}/v1"
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=30)
    raise SystemExit(f"{server} did not start")


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of a process and its descendants (Linux /proc)."""
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, grew = {root_pid}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(times.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, key: str, seconds: int, connections: int, script: Path | None) -> tuple[float, int]:
    argv = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s",
            "-H", f"Authorization: Bearer {key}", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise SystemExit(f"{non_2xx.group(1)} requests failed:\n{out}")
    return (float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            int(re.search(r"(\d+) requests in", out).group(1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--servers", nargs="+", default=["project", *BARE],
                        choices=["project", *BARE])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE settings for the project's server")
    parser.add_argument("--gunicorn", nargs="*", default=[], metavar="ARG",
                        help="extra gunicorn arguments for the project's server, e.g. --gunicorn=--worker-class=asgi")
    parser.add_argument("--database", default=DB, help="the PostgreSQL database to (re)create and use")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--before", type=Path, help="also serve the project from this checkout (e.g. a "
                        "`git archive` of an earlier commit), as server `before`, with the same settings")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    fresh_database(args.database)
    # One key makes every request: its rate limit would answer most of them 429.
    env = {**os.environ, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{args.database}",
           "REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode(),
           "REFLEXDB_DATA_DIR": tempfile.mkdtemp(), "REFLEXDB_RATE_LIMIT": "off", "REFLEXDB_ACCESS_LOG": ""}
    project_env = {**env, **dict(item.split("=", 1) for item in args.env)}
    reflexdb(env, "migrate")
    key = json.loads(reflexdb(env, "customers", "create", "--name", "Bench"))["key"]
    work = Path(tempfile.mkdtemp())
    (work / "patch.lua").write_text(PATCH_LUA)

    connection_id = None
    figures: dict[tuple[str, str, int], list[float]] = {}
    cpu: dict[tuple[str, str, int], list[float]] = {}     # server CPU ms per request
    if args.before:
        args.servers = ["before", *args.servers]
    for _ in range(args.rounds):
        for server in args.servers:
            proc, base = start(server, env if server in BARE else project_env, args.workers, args.before,
                                tuple(args.gunicorn), args.database)
            try:
                if connection_id is None:
                    created = requests.post(f"{base}/connections", headers={"Authorization": f"Bearer {key}"}, json={
                        "name": "bench", "mysqlHost": "db", "availableSchemas": ["s"], "mysqlUser": "u",
                        "mysqlPassword": "p", "instance": {"name": "d", "mysqlDb": "s"}}, timeout=10)
                    created.raise_for_status()
                    connection_id = created.json()["id"]
                url = f"{base}/connections/{connection_id}"
                wrk(url, key, 2, 8, None)                                   # warm-up
                for connections in args.connections:
                    for method, script in (("GET", None), ("PATCH", work / "patch.lua")):
                        spent = cpu_seconds(proc.pid)
                        rate, served = wrk(url, key, args.seconds, connections, script)
                        spent = cpu_seconds(proc.pid) - spent
                        figures.setdefault((server, method, connections), []).append(rate)
                        cpu.setdefault((server, method, connections), []).append(1000 * spent / served)
            finally:
                proc.terminate()
                proc.wait(timeout=30)

    medians = {k: statistics.median(v) for k, v in figures.items()}
    cpu_ms = {k: statistics.median(v) for k, v in cpu.items()}
    bare = [s for s in args.servers if s in BARE]
    print(f"{args.workers} workers, wrk {args.seconds}s per figure, median of {args.rounds} round(s)"
          + (f", project with {' '.join(args.env + args.gunicorn)}" if args.env or args.gunicorn else ""))
    print(f"{'server':<14}{'method':<7}" + "".join(f"{'c=' + str(c):>9}" for c in args.connections))
    for server in args.servers:
        for method in ("GET", "PATCH"):
            print(f"{server:<14}{method:<7}"
                  + "".join(f"{medians[(server, method, c)]:>9.0f}" for c in args.connections)
                  + "   CPU ms/request: "
                  + " ".join(f"{cpu_ms[(server, method, c)]:.2f}" for c in args.connections))
    rows = []
    for ours in [s for s in args.servers if s not in BARE]:
        if not bare:
            break
        print(f"{ours} / best bare worker class (the bare class that served more at that count):")
        for method in ("GET", "PATCH"):
            cells = []
            for c in args.connections:
                best = max(bare, key=lambda s: medians[(s, method, c)])
                ratio = medians[(ours, method, c)] / medians[(best, method, c)]
                cpu_ratio = cpu_ms[(best, method, c)] / cpu_ms[(ours, method, c)]
                cells.append(f"{ratio:>6.2f}x ({best.removeprefix('bare-')}; CPU {cpu_ratio:.2f}x)")
                rows.append({"server": ours, "method": method, "connections": c, "ratio": round(ratio, 3),
                             "cpu_ratio": round(cpu_ratio, 3), "best": best})
            print(f"{'':<14}{method:<7}" + "  ".join(cells))
    if args.json:
        args.json.write_text(json.dumps({
            "workers": args.workers, "seconds": args.seconds, "rounds": args.rounds, "env": args.env,
            "figures": [{"server": s, "method": m, "connections": c, "req_per_s": round(v, 1),
                         "server_cpu_ms_per_request": round(cpu_ms[(s, m, c)], 3)}
                        for (s, m, c), v in medians.items()],
            "ratios": rows}, indent=2))


if __name__ == "__main__":
    main()
