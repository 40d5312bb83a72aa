"""The control plane at fleet scale: the schema-in-use guard and one page of GET /v1/databases.

One account's connection (schemas s0, s1, s2) grows to each size in turn (scripts/fleet.py
inserts the databases in one statement); at each size, PATCH removing a used schema (409) and
GET /v1/databases?limit=10 (one page, the same 10 items at every size: the default page of
100 would hold 10 items at 10 databases and 100 above, not the same work) are loaded at 1 and 8 connections, alternated
within each round. The ratio is to the smallest size.
"""

from __future__ import annotations

import subprocess
import sys

import requests

from bench.common import (
    ROOT,
    Settings,
    alternate,
    log,
    lua_script,
    ratio,
    summarise,
    table,
    wrk,
)
from bench.controlplane import ControlPlane, shared


def grow(plane: ControlPlane, customer: str, connection: str, first: int, count: int) -> None:
    """Add databases g<first>… in another process (the services configured there, not here)."""
    code = ("import sys; sys.path.insert(0, 'scripts'); from fleet import add_databases; "
            "from app.bootstrap import configure_services; from app.config import Settings; "
            "from app.storage.database import db; "
            "configure_services(Settings.from_env(), require_migrated=True); "
            "db.connect(); add_databases(sys.argv[1], sys.argv[2], int(sys.argv[4]), first=int(sys.argv[3]))")
    subprocess.run([sys.executable, "-c", code, customer, connection, str(first), str(count)],
                   env=plane.env, cwd=ROOT, check=True, capture_output=True)


PAGE = 10


def _items(answer) -> int:
    return len(answer if isinstance(answer, list) else answer.get("items", answer.get("data", [])))


def run(settings: Settings, dbname: str) -> dict:
    plane, base = shared(dbname, settings.work_dir)
    connection = plane.create_connection(base, "fleet", ("s0", "s1", "s2"), instance=False)
    customer = requests.get(f"{base}/connections/{connection}", headers=plane.auth,
                            timeout=10).json()["customerId"]
    guard_body = '{"availableSchemas": ["s1", "s2"]}'
    guard_script = lua_script(f"/v1/connections/{connection}", guard_body, 0, 0, method="PATCH",
                              headers={**plane.auth, "Content-Type": "application/json"},
                              directory=settings.work_dir)
    cells, have = [], 0
    for size in settings.fleet_sizes:
        log(f"fleet: {size:,} databases")
        grow(plane, customer, connection, have + 1, size - have)
        have = size
        guard = requests.patch(f"{base}/connections/{connection}", data=guard_body,
                               headers={**plane.auth, "Content-Type": "application/json"}, timeout=30)
        page = requests.get(f"{base}/databases?limit={PAGE}", headers=plane.auth, timeout=30)
        if guard.status_code != 409 or page.status_code != 200:
            raise SystemExit(f"fleet: guard {guard.status_code}, list {page.status_code}")
        operations = {
            "guard": lambda c, d: wrk(f"{base}/connections/{connection}", c, d, guard_script,
                                      expect_non_2xx=True),
            "list": lambda c, d: wrk(f"{base}/databases?limit={PAGE}", c, d, headers=plane.auth),
        }
        for connections in settings.fleet_connections:
            if settings.warmup:
                for op in operations.values():
                    op(connections, settings.warmup)
            samples = alternate(operations, settings.rounds,
                                lambda name, op, c=connections: op(c, settings.duration))
            for name, values in samples.items():
                cells.append({"operation": name, "databases": size, "connections": connections,
                              "pageItems": _items(page.json()) if name == "list" else None,
                              **summarise(values)})
    for cell in cells:
        smallest = next(c for c in cells if c["operation"] == cell["operation"]
                        and c["connections"] == cell["connections"])
        cell["vsSmallest"] = ratio(cell["rps"], smallest["rps"])
    return {"cells": cells}


def render(section: dict) -> str:
    labels = {"guard": "PATCH removing a used schema (409)", "list": f"GET /v1/databases?limit={PAGE}"}
    rows = [[labels[c["operation"]], c["databases"], c["connections"], c["rps"],
             round(1000 / c["rps"], 2) if c["rps"] else None, c["p99Ms"], c["vsSmallest"]]
            for c in section["cells"]]
    return table("Control plane at fleet scale (median req/s)",
                 ["operation", "databases", "conns", "req/s", "ms/request", "p99 ms",
                  "× the smallest fleet (req/s)"], rows)
