"""Instance vs PostGraphile vs a direct psycopg2 server, on the same PostgreSQL data.

Each system answers the same three questions, the page offset or post id drawn at random per
request by wrk's Lua script (so caching one answer wins nothing), at each connection count;
plus one repeated-identical-query case, where a cache may win.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from app.build import build_artifact
from app.contracts.instance_settings import InstanceSettings, SourceSettings
from app.contracts.query_keys import make_query_key, write_keys_file
from app.engine.runtime import LocalProcessRuntime
from app.sources import SourceCredentials
from bench.common import (
    BENCH_DIR,
    MARIADB,
    PG,
    VENV_BIN,
    Process,
    Settings,
    alternate,
    free_port,
    log,
    lua_script,
    ratio,
    summarise,
    table,
    wrk,
)
from bench.dataset import SCHEMA, published_count

QUERIES = ("list", "nested", "post")
QUERY_LABELS = {
    "list": "50 published posts, id + title (random page)",
    "nested": "+ author name + approved comments (random page)",
    "post": "one post by id, author + comments (random id)",
    "nested-repeated": "+ author + approved comments, the same page every time",
}
INSTANCE_QUERIES = {
    "list": "posts(published = true) { id title LIMIT 50 OFFSET %d }",
    "nested": "posts(published = true) { id title author { name } comments(approved = true) { body } "
              "LIMIT 50 OFFSET %d }",
    "post": "posts(id = %d) { id title author { name } comments { body } }",
}
_GQL_NESTED = "rowId title authorByAuthorId { name } commentsByPostId(condition: {approved: true}, " \
              "orderBy: PRIMARY_KEY_ASC) { nodes { body } }"
# PostGraphile 5's amber preset names a primary key `rowId` (`id` is the global Node id). The
# varied number goes in a variable, as GraphQL clients send it: one document text, planned once.
GRAPHQL_QUERIES = {
    "list": "query($n: Int!) { allPosts(condition: {published: true}, orderBy: PRIMARY_KEY_ASC, "
            "first: 50, offset: $n) { nodes { rowId title } } }",
    "nested": "query($n: Int!) { allPosts(condition: {published: true}, orderBy: PRIMARY_KEY_ASC, "
              "first: 50, offset: $n) { nodes { " + _GQL_NESTED + " } } }",
    "post": "query($n: Int!) { postByRowId(rowId: $n) { rowId title authorByAuthorId { name } "
            "commentsByPostId(orderBy: PRIMARY_KEY_ASC) { nodes { body } } } }",
}


@dataclass
class System:
    """One server under test: where to POST and how to phrase each question."""

    name: str
    url: str
    headers: dict
    body: Callable[[str, object], str]   # (query, "%d" or a number) -> the request body


def start_instance(settings: Settings, dbname: str, backend: str = "postgres",
                   database_id: str = "bench") -> tuple[LocalProcessRuntime, object, System]:
    """An instance over the dataset (PostgreSQL, or MariaDB database `dbname`), started the way
    the lifecycle engine does (LocalProcessRuntime), once its first snapshot serves."""
    if backend == "postgres":
        source = SourceSettings("postgres", PG["host"], PG["port"], PG["user"], SCHEMA, dbname)
    else:
        source = SourceSettings("mysql", MARIADB["host"], MARIADB["port"], MARIADB["user"], dbname)
    credentials = SourceCredentials(backend=source.backend, host=source.host, port=source.port,
                                    user=source.user, password="", schema=source.schema,
                                    database=source.database)
    artifact, _ = build_artifact(credentials)
    runtime = LocalProcessRuntime(Path(settings.work_dir) / "instances", start_timeout=60)
    os.makedirs(runtime.base_dir, exist_ok=True)
    keys_path = str(runtime.base_dir / f"keys-{database_id}.json")
    secret = secrets.token_urlsafe(32)
    write_keys_file(keys_path, secret, {"bench": None})
    instance_settings = InstanceSettings(database_id=database_id, artifact_path="-", keys_file="-",
                                         source=source, sync_interval_seconds=3600,
                                         memory_limit_mb=2048)
    handle = runtime.start(database_id, instance_settings, artifact, "", keys_path)
    wait_serving(runtime, handle)
    system = System("instance", f"{handle.endpoint_url}/query",
                    {"Authorization": f"Bearer {make_query_key(secret, 'bench')}",
                     "Content-Type": "text/plain"},
                    lambda query, n: INSTANCE_QUERIES[query].replace("%d", str(n)))
    return runtime, handle, system


def wait_serving(runtime, handle, after: str | None = None, timeout: float = 300) -> dict:
    """Poll /health until a snapshot (newer than `after`, a lastSyncAt) serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = runtime.health(handle)
        if health.get("serving") and health.get("lastSyncAt") != after and \
                health.get("loadRowsPerSecond"):
            return health
        time.sleep(0.1)
    raise SystemExit(f"the instance did not load a snapshot: {health}")


def start_postgraphile(settings: Settings, dbname: str) -> tuple[Process, System]:
    binary = BENCH_DIR / "node_modules" / ".bin" / "postgraphile"
    if not binary.exists():
        raise SystemExit("PostGraphile is not installed: `npm ci --prefix bench`")
    port = free_port()
    process = Process([str(binary), "-P", "postgraphile/presets/amber",
                       "-c", f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{dbname}",
                       "-s", SCHEMA, "-p", str(port), "-n", "127.0.0.1"],
                      env={**os.environ, "NODE_ENV": "production", "GRAPHILE_ENV": "production"},
                      log=Path(settings.work_dir) / "postgraphile.log")
    url = f"http://127.0.0.1:{port}/graphql"
    process.wait_http(url, ok=lambda r: True)
    return process, System("postgraphile", url, {"Content-Type": "application/json"},
                           lambda query, n: json.dumps({"query": GRAPHQL_QUERIES[query],
                                                        "variables": {"n": "%d"}})
                           .replace('"%d"', str(n)))


def start_pg_server(settings: Settings, dbname: str) -> tuple[Process, System]:
    port = free_port()
    workers = os.cpu_count() or 2
    process = Process([str(VENV_BIN / "gunicorn"), "--config", "/dev/null", "-k", "gthread", "-w", str(workers),
                       "--threads", "2", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                       "bench.baselines.pg_server:app"],
                      env={**os.environ,
                           "BENCH_PG_DSN": f"host={PG['host']} port={PG['port']} user={PG['user']} "
                                           f"dbname={dbname}"},
                      log=Path(settings.work_dir) / "pg_server.log")
    url = f"http://127.0.0.1:{port}/query"
    process.wait_http(url, ok=lambda r: True)
    return process, System("psycopg2 server", url, {"Content-Type": "application/json"},
                           lambda query, n: json.dumps({"q": query, "n": "%d"})
                           .replace('"%d"', str(n)))


def check_answers(systems: dict[str, System], settings: Settings) -> None:
    """The instance and the psycopg2 server give the same JSON; PostGraphile answers without errors."""
    for query, n in (("list", 7), ("nested", 50), ("post", settings.posts // 2)):
        answers = {}
        for name, system in systems.items():
            response = requests.post(system.url, data=system.body(query, n).encode(),
                                     headers=system.headers, timeout=30)
            if response.status_code != 200 or "errors" in response.text[:20]:
                raise SystemExit(f"{name} failed {query}: {response.status_code} {response.text[:300]}")
            answers[name] = response.json()
        if answers["instance"] != answers["psycopg2 server"]:
            raise SystemExit(f"the instance and the psycopg2 server disagree on {query}")


def run(settings: Settings, dbname: str) -> dict:
    """Start the three systems, load each cell in alternation, return the JSON section."""
    started = []
    runtime = handle = None
    try:
        log("instance: starting (build + snapshot load)")
        runtime, handle, instance = start_instance(settings, dbname)
        log("postgraphile: starting")
        pg_process, postgraphile = start_postgraphile(settings, dbname)
        started.append(pg_process)
        psy_process, psy = start_pg_server(settings, dbname)
        started.append(psy_process)
        systems = {s.name: s for s in (instance, postgraphile, psy)}
        check_answers(systems, settings)
        scripts_dir = settings.work_dir
        ranges = {"list": (0, published_count(settings.posts) - 50),
                  "nested": (0, published_count(settings.posts) - 50),
                  "post": (1, settings.posts)}
        cells = [(q, c) for q in QUERIES for c in settings.connections]
        cells.append(("nested-repeated", 4 if 4 in settings.connections else settings.connections[-1]))
        results = []
        for query, connections in cells:
            base_query = "nested" if query == "nested-repeated" else query
            lo, hi = ranges[base_query]
            scripts = {}
            for name, system in systems.items():
                if query == "nested-repeated":
                    template, lo_, hi_ = system.body(base_query, 100), 0, 0
                else:
                    template, lo_, hi_ = system.body(base_query, "%d"), lo, hi
                scripts[name] = lua_script("/" + system.url.split("/", 3)[3], template, lo_, hi_,
                                           headers=system.headers, directory=scripts_dir)
            log(f"instance: {query} at {connections} connections")
            if settings.warmup:
                for name, system in systems.items():
                    wrk(system.url, connections, settings.warmup, scripts[name])
            samples = alternate(systems, settings.rounds,
                                lambda name, system, c=connections, s=scripts:
                                wrk(system.url, c, settings.duration, s[name]))
            cell = {"query": query, "label": QUERY_LABELS[query], "connections": connections,
                    "systems": {name: summarise(s) for name, s in samples.items()}}
            inst = cell["systems"]["instance"]["rps"]
            cell["instanceVsPostgraphile"] = ratio(inst, cell["systems"]["postgraphile"]["rps"])
            cell["instanceVsPsycopg2"] = ratio(inst, cell["systems"]["psycopg2 server"]["rps"])
            results.append(cell)
        memory = {"instance": _rss_mib(handle.pid), "postgraphile": _rss_mib(pg_process.popen.pid),
                  "psycopg2 server": _rss_mib(psy_process.popen.pid)}
        return {"cells": results, "memoryMiB": memory,
                "instanceHealth": {k: v for k, v in runtime.health(handle).items()
                                   if k in ("loadRowsPerSecond", "snapshotBytes", "rowCounts")}}
    finally:
        for process in started:
            process.stop()
        if handle is not None:
            runtime.stop(handle)


def _rss_mib(pid: int) -> float | None:
    """Memory of a process and its children: the sum of their PSS (shared pages counted once)."""
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
        return round(sum(p.memory_full_info().pss for p in family) / 2**20, 1)
    except psutil.Error:
        return None


def render(section: dict) -> str:
    rows = []
    for cell in section["cells"]:
        s = cell["systems"]
        rows.append([cell["label"], cell["connections"], s["instance"]["rps"], s["postgraphile"]["rps"],
                     s["psycopg2 server"]["rps"], cell["instanceVsPostgraphile"],
                     cell["instanceVsPsycopg2"], s["instance"]["p99Ms"],
                     max(v["generatorCpu"] for v in s.values())])
    out = table("Instance vs PostGraphile vs direct psycopg2 (median req/s)",
                ["query", "conns", "instance", "PostGraphile", "psycopg2 server",
                 "× PostGraphile", "× psycopg2", "instance p99 ms", "wrk cores"], rows)
    memory = ", ".join(f"{k} {v} MiB" for k, v in section["memoryMiB"].items())
    return out + f"\n\nmemory after the run (PSS, each server's processes together): {memory}"


if __name__ == "__main__":
    sys.exit("run the suite: python -m bench --only instance")
