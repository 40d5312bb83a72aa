"""What every part of the suite shares: processes, ports, the load generator, medians, tables."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pymysql
import requests

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
VENV_BIN = Path(sys.executable).parent


@dataclass
class Settings:
    """How long and how often each cell runs, and the dataset's size."""

    duration: float = 5.0          # seconds of load per cell and round
    rounds: int = 3                # each round runs every system once, in turn
    warmup: float = 1.0
    authors: int = 1000
    posts: int = 20000
    comments: int = 100000
    connections: tuple[int, ...] = (1, 2, 4, 8)
    api_connections: tuple[int, ...] = (1, 8, 32)
    fleet_sizes: tuple[int, ...] = (10, 10_000, 100_000)
    fleet_connections: tuple[int, ...] = (1, 8)
    provision_runs: int = 3
    load_repeats: int = 3
    work_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rx_bench_"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_admin(dbname: str = "postgres"):
    conn = psycopg2.connect(**PG, dbname=dbname)
    conn.autocommit = True
    return conn


def mariadb_admin():
    return pymysql.connect(**MARIADB, autocommit=True)


def create_pg_database(name: str) -> None:
    with contextlib.closing(pg_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    with contextlib.closing(pg_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Process:
    """A server the suite started: its own session, stopped by its process group."""

    def __init__(self, args: list[str], *, env: dict | None = None, cwd: str | Path = ROOT,
                 log: str | Path | None = None):
        self.log_path = Path(log) if log else Path(tempfile.mktemp(prefix="rx_bench_", suffix=".log"))
        self.log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def wait_http(self, url: str, timeout: float = 60.0, ok=lambda r: r.status_code < 500) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(requests.RequestException):
                if ok(requests.get(url, timeout=2)):
                    return
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{url} did not come up; log tail:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.log.close()


# -- the load generator --------------------------------------------------------------

_LUA = """
local counter = 0
local lo, hi = {lo}, {hi}
local template = {template}
local path = {path}
wrk.method = {method}
{headers}
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(seed * 7919 + os.time())
end
function request()
  local body = template
  if hi > lo or lo ~= 0 then body = string.format(template, math.random(lo, hi)) end
  return wrk.format(nil, path, nil, body)
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_script(path: str, template: str, lo: int, hi: int, *, method: str = "POST",
               headers: dict[str, str] | None = None, directory: str | None = None) -> str:
    """A wrk script sending `template % random(lo, hi)` (or `template` as is when lo = hi = 0)."""
    header_lines = "\n".join(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}"
                             for k, v in (headers or {}).items())
    text = _LUA.format(lo=lo, hi=hi, template=_lua_string(template), path=_lua_string(path),
                       method=_lua_string(method), headers=header_lines)
    fd, name = tempfile.mkstemp(prefix="rx_bench_", suffix=".lua", dir=directory)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return name


@dataclass
class LoadResult:
    rps: float
    p99_ms: float | None
    errors: int
    generator_cpu: float       # cores the load generator itself used, on average

    def as_dict(self) -> dict:
        return {"rps": round(self.rps, 1), "p99Ms": self.p99_ms, "errors": self.errors,
                "generatorCpu": round(self.generator_cpu, 3)}


def require_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("the suite needs wrk, a load generator in C: run `bench/setup` "
                         "(apt-get install wrk, npm ci --prefix bench)")
    return path


def ensure_tools() -> None:
    """Install what the suite needs beyond the venv on first use, as scripts/spec.py does for its tools:
    wrk (Debian's package; needs root) and PostGraphile (pinned in bench/package-lock.json)."""
    if not shutil.which("wrk") or not (BENCH_DIR / "node_modules" / ".bin" / "postgraphile").exists():
        if not shutil.which("wrk") and os.geteuid() != 0:
            require_wrk()
        log("installing the suite's tools: bench/setup")
        subprocess.run(["bash", str(BENCH_DIR / "setup")], check=True)
    require_wrk()


def wrk(url: str, connections: int, duration: float, script: str | None = None,
        headers: dict[str, str] | None = None, expect_non_2xx: bool = False) -> LoadResult:
    """Load `url` with wrk; one wrk thread per 4 connections (at most 2: the machine's cores).

    More than 1% of requests failing (non-2xx, unless `expect_non_2xx`, or socket errors) stops the run.
    """
    threads = max(1, min(2, connections // 4))
    args = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            "--latency", "--timeout", "10s"]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    if script:
        args += ["-s", script]
    args.append(url)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True)
    out = done.stdout
    if done.returncode != 0 or done.stderr.strip():
        raise SystemExit(f"wrk failed on {url}: {done.stderr.strip()[:500]}")
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = 0
    for pattern in (() if expect_non_2xx else (r"Non-2xx or 3xx responses: (\d+)",)) + (
                    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",):
        found = re.search(pattern, out)
        if found:
            errors += sum(int(g) for g in found.groups())
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99_ms = None
    if p99:
        p99_ms = round(float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)], 2)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    if errors > total // 100:
        raise SystemExit(f"{errors} of {total} requests to {url} failed:\n{out}")
    return LoadResult(rps, p99_ms, errors, cpu / elapsed if elapsed else 0.0)


def alternate(systems: dict, rounds: int, run) -> dict[str, list]:
    """Run `run(name, system)` for every system in each round, the order rotating per round."""
    names = list(systems)
    samples: dict[str, list] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(run(name, systems[name]))
    return samples


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(samples: list[LoadResult]) -> dict:
    """The median of a cell's rounds, with every round kept for the JSON."""
    return {"rps": round(median([s.rps for s in samples]), 1),
            "p99Ms": median([s.p99_ms for s in samples]),
            "errors": sum(s.errors for s in samples),
            "generatorCpu": round(median([s.generator_cpu for s in samples]), 3),
            "rounds": [round(s.rps, 1) for s in samples]}


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 2)


def table(title: str, header: list[str], rows: list[list]) -> str:
    """A Markdown table (it prints readably and pastes into docs/benchmarks.md)."""
    def cell(value) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
