"""The benchmark suite's quick mode on a tiny dataset: every part runs and writes its JSON shape.

Not a performance test (no figure is checked against a bound): it keeps the suite from rotting
as the code it measures changes. The suite installs wrk and PostGraphile on first use (bench/setup).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

def _keys(value):
    return sorted(value) if isinstance(value, dict) else value


def test_quick_run_writes_every_part(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--tiny", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    assert _keys(report) == ["api", "finishedAt", "fleet", "instance", "load", "machine", "provision",
                             "settings", "startedAt", "targets"]
    assert report["settings"] == {"duration": 1.0, "rounds": 1,
                                  "dataset": {"authors": 50, "posts": 1000, "comments": 5000}}

    cells = report["instance"]["cells"]
    assert [(c["query"], c["connections"]) for c in cells] == [
        ("list", 2), ("nested", 2), ("post", 2), ("nested-repeated", 2)]
    for cell in cells:
        assert _keys(cell["systems"]) == ["instance", "postgraphile", "psycopg2 server"]
        for figures in cell["systems"].values():
            assert _keys(figures) == ["errors", "generatorCpu", "p99Ms", "rounds", "rps"]
            assert figures["rps"] > 0 and figures["errors"] == 0
        assert cell["instanceVsPostgraphile"] > 0 and cell["instanceVsPsycopg2"] > 0
    assert _keys(report["instance"]["memoryMiB"]) == ["instance", "postgraphile", "psycopg2 server"]

    load = report["load"]
    assert load["rows"] == 6050
    assert _keys(load["systems"]) == ["instance from MariaDB", "instance from PostgreSQL", "mysqldump",
                                      "pg_dump"]
    assert all(v["rowsPerSecond"] > 0 and v["vsPgDump"] > 0 for v in load["systems"].values())

    assert [(c["operation"], c["connections"]) for c in report["api"]["cells"]] == [("GET", 4), ("PATCH", 4)]
    for cell in report["api"]["cells"]:
        assert _keys(cell["systems"]) == ["bare Flask gthread", "bare Flask sync", "control plane"]
        assert cell["vsBareFlask"] > 0

    assert [(c["operation"], c["databases"]) for c in report["fleet"]["cells"]] == [
        ("guard", 10), ("list", 10), ("guard", 100), ("list", 100)]
    assert [c["pageItems"] for c in report["fleet"]["cells"] if c["operation"] == "list"] == [10, 10]

    provision = report["provision"]
    assert len(provision["runs"]) == 1
    assert provision["median"]["totalSeconds"] > 0
    assert "deploying" in provision["median"]["statusSeconds"]
    assert any(step.startswith("build succeeded") for step in provision["median"]["buildSteps"])

    checked = {t["target"]: t for t in report["targets"]}
    assert all(_keys(t) == ["bound", "figure", "met", "target"] for t in checked.values())
    # The tiny run has 2 connections only: the 4-connection targets are not measured.
    assert checked["instance ≥ PostGraphile: list, 2 conns"]["met"] in (True, False)
    assert checked["instance ≥ PostGraphile: list, 4 conns"]["met"] is None
    assert checked["snapshot load ≥ 0.5× pg_dump (instance from PostgreSQL)"]["met"] in (True, False)


def test_app_cpu_comparison_runs_both_methods(tmp_path):
    """scripts/bench_app_cpu.py on the same checkout twice: both apps serve, every slice
    answers 200 (the script stops otherwise), one line per method with a ratio."""
    done = subprocess.run([sys.executable, "scripts/bench_app_cpu.py", ".", ".", "--pairs", "2",
                           "--requests", "5", "--database", "reflexdb_app_cpu_smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].endswith("2 pairs of 5 requests")
    assert [line.split()[0] for line in lines[1:]] == ["GET", "PATCH"]
    assert all(" B/A " in line for line in lines[1:])
