"""The control plane against bare Flask + psycopg2 doing the same key lookup and SQL.

GET /v1/connections/{id} and PATCH (a rename; the name drawn at random per request) at each
connection count; the control plane runs under the project's gunicorn config and defaults, the
baseline under gunicorn's sync and gthread workers (as many workers as cores), the better of the
two being the ratio's base. Systems alternate within each round.
"""

from __future__ import annotations

from bench.common import (
    Settings,
    alternate,
    log,
    lua_script,
    ratio,
    summarise,
    table,
    wrk,
)
from bench.controlplane import shared

BASELINES = ("bare Flask sync", "bare Flask gthread")


def run(settings: Settings, dbname: str) -> dict:
    plane, base = shared(dbname, settings.work_dir)
    baselines = []
    try:
        bases = {"control plane": base}
        connection = plane.create_connection(base, "bench")
        for worker_class in ("sync", "gthread"):
            url, process = plane.serve_bare_flask(worker_class)
            bases[f"bare Flask {worker_class}"] = url
            baselines.append(process)
        results = []
        for method in ("GET", "PATCH"):
            scripts = {}
            for name in bases:
                if method == "PATCH":
                    scripts[name] = lua_script(f"/v1/connections/{connection}", '{"name": "bench-%d"}',
                                               1, 10**9, method="PATCH",
                                               headers={**plane.auth, "Content-Type": "application/json"},
                                               directory=settings.work_dir)
            for connections in settings.api_connections:
                log(f"api: {method} at {connections} connections")

                def load(name, base, duration, method=method, connections=connections, scripts=scripts):
                    url = f"{base}/connections/{connection}"
                    if method == "GET":
                        return wrk(url, connections, duration, headers=plane.auth)
                    return wrk(url, connections, duration, scripts[name])
                if settings.warmup:
                    for name, base in bases.items():
                        load(name, base, settings.warmup)
                samples = alternate(bases, settings.rounds,
                                    lambda name, base: load(name, base, settings.duration))
                cell = {"operation": method, "connections": connections,
                        "systems": {name: summarise(s) for name, s in samples.items()}}
                best = max(BASELINES, key=lambda b: cell["systems"][b]["rps"])
                cell["bestBaseline"] = best
                cell["vsBareFlask"] = ratio(cell["systems"]["control plane"]["rps"],
                                            cell["systems"][best]["rps"])
                results.append(cell)
        return {"cells": results}
    finally:
        for process in baselines:
            process.stop()


def render(section: dict) -> str:
    rows = []
    for cell in section["cells"]:
        s = cell["systems"]
        rows.append([f"{cell['operation']} /v1/connections/{{id}}", cell["connections"],
                     s["control plane"]["rps"], s["bare Flask sync"]["rps"], s["bare Flask gthread"]["rps"],
                     cell["vsBareFlask"], s["control plane"]["p99Ms"]])
    return table("Control plane vs bare Flask + psycopg2 (median req/s)",
                 ["operation", "conns", "control plane", "bare Flask sync", "bare Flask gthread",
                  "× best bare Flask", "control plane p99 ms"], rows)
