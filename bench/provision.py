"""Provision time for the dataset, split by step.

`reflexdb serve` (API + one engine worker) on a fresh store; a PostgreSQL connection to the
dataset and a database on it; POST /provision, then the status polled every 50 ms until
`running`. Reported: the time in each status (from the polls) and the build log's timed steps
(app/engine/steps.py TimedLog). Each round terminates the database and provisions it again.
"""

from __future__ import annotations

import re
import time

import requests

from bench.common import PG, Settings, drop_pg_database, log, median, table
from bench.controlplane import ControlPlane, serve_with_engine
from bench.dataset import SCHEMA

STABLE = ("running", "failed", "terminated")
_LOG_LINE = re.compile(r"^\[\s*([\d.]+)s\]\s+([\d.]+)s\s+(.*)$")


def _wait(base: str, auth: dict, database: str, until: tuple[str, ...], timeout: float = 600) -> list:
    """Poll the database until its status is in `until`; returns [(seconds, status)] as it changed."""
    started, seen = time.monotonic(), []
    while time.monotonic() - started < timeout:
        status = requests.get(f"{base}/databases/{database}", headers=auth, timeout=30).json()["status"]
        if not seen or seen[-1][1] != status:
            seen.append((time.monotonic() - started, status))
        if status in until:
            return seen
        time.sleep(0.05)
    raise SystemExit(f"provision: still {seen[-1][1]} after {timeout} s")


def _steps(log_text: str, dbname: str) -> dict[str, float]:
    """Each timed line of the build log: its text (numbers dropped) -> seconds it took."""
    steps = {}
    for line in log_text.replace(dbname, "<dataset>").splitlines():
        found = _LOG_LINE.match(line)
        if found:
            name = re.sub(r"\d[\d,.]*", "N", found.group(3)).strip()[:80]
            steps[name] = steps.get(name, 0.0) + float(found.group(2))
    return steps


def provision_once(base: str, auth: dict, database: str, dbname: str) -> dict:
    started = time.monotonic()
    response = requests.post(f"{base}/databases/{database}/provision", headers=auth, timeout=30)
    if response.status_code not in (200, 202):
        raise SystemExit(f"provision answered {response.status_code}: {response.text[:300]}")
    seen = _wait(base, auth, database, STABLE)
    total = time.monotonic() - started
    if seen[-1][1] != "running":
        detail = requests.get(f"{base}/databases/{database}", headers=auth, timeout=30).json()
        raise SystemExit(f"provision ended {seen[-1][1]}: {detail.get('lastError')}")
    statuses = {}
    for (at, status), following in zip(seen, [s[0] for s in seen[1:]] + [total], strict=True):
        statuses[status] = round(statuses.get(status, 0.0) + following - at, 3)
    statuses.pop("running", None)
    # The deploy's share that is the snapshot load, from the instance's own /health.
    endpoint = requests.get(f"{base}/databases/{database}", headers=auth, timeout=30).json().get("endpointUrl")
    health = requests.get(f"{endpoint}/health", timeout=30).json() if endpoint else {}
    load_seconds = None
    if health.get("loadRowsPerSecond") and health.get("rowCounts"):
        load_seconds = round(sum(health["rowCounts"].values()) / health["loadRowsPerSecond"], 3)
    builds = requests.get(f"{base}/databases/{database}/builds", headers=auth, timeout=30).json()
    builds = builds if isinstance(builds, list) else builds.get("items", [])
    build_log = requests.get(f"{base}/databases/{database}/builds/{builds[0]['id']}/logs",
                             headers=auth, timeout=30).text
    return {"totalSeconds": round(total, 3), "statusSeconds": statuses, "snapshotLoadSeconds": load_seconds,
            "buildSteps": _steps(build_log, dbname), "buildLog": build_log}


def run(settings: Settings, dbname: str) -> dict:
    store = dbname.replace("rx_bench_data_", "rx_bench_prov_")
    plane = ControlPlane(store, settings.work_dir)
    try:
        base = serve_with_engine(plane)
        body = {"name": "bench", "backend": "postgres", "mysqlHost": PG["host"], "mysqlPort": PG["port"],
                "availableSchemas": [f"{dbname}.{SCHEMA}"], "mysqlUser": PG["user"],
                "mysqlPassword": "trust-auth-ignores-it", "syncInterval": 3600,
                "instance": {"name": "bench", "mysqlDb": f"{dbname}.{SCHEMA}"}}
        response = requests.post(f"{base}/connections", headers=plane.auth, json=body, timeout=30)
        if response.status_code != 201:
            raise SystemExit(f"provision: connection refused: {response.text[:400]}")
        database = response.json()["databases"][0]["id"]
        runs = []
        for index in range(settings.provision_runs):
            if index:
                requests.post(f"{base}/databases/{database}/terminate", headers=plane.auth, timeout=30)
                _wait(base, plane.auth, database, ("terminated",))
            log(f"provision: round {index + 1}")
            runs.append(provision_once(base, plane.auth, database, dbname))
        requests.post(f"{base}/databases/{database}/terminate", headers=plane.auth, timeout=30)
        _wait(base, plane.auth, database, ("terminated",))
    finally:
        plane.stop()
        drop_pg_database(store)
    summary = {"totalSeconds": median([r["totalSeconds"] for r in runs]),
               "snapshotLoadSeconds": median([r["snapshotLoadSeconds"] for r in runs]),
               "statusSeconds": {k: median([r["statusSeconds"].get(k) for r in runs])
                                 for k in runs[0]["statusSeconds"]},
               "buildSteps": {k: median([r["buildSteps"].get(k) for r in runs])
                              for k in runs[0]["buildSteps"]}}
    return {"rows": settings.authors + settings.posts + settings.comments, "median": summary,
            "runs": runs}


def render(section: dict) -> str:
    m = section["median"]
    rows = [["total, POST /provision → running", m["totalSeconds"]]]
    rows += [[f"status `{k}`", v] for k, v in m["statusSeconds"].items()]
    rows.append(["of which the snapshot load (the instance's /health)", m["snapshotLoadSeconds"]])
    rows += [[f"build step: {k}", v] for k, v in m["buildSteps"].items()]
    return table(f"Provision, {section['rows']:,} rows (median seconds over {len(section['runs'])} runs)",
                 ["step", "seconds"], rows)
