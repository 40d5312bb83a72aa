"""The benchmark suite: `python -m bench [--quick] [--only PART ...] [--duration S] [--rounds N]`.

Starts everything it measures (instance, PostGraphile, a psycopg2 server, the control plane,
bare Flask, the lifecycle engine) on throw-away databases, prints Markdown tables and writes
the figures as JSON (default bench/results.json). docs/benchmarks.md explains each part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import sys
from pathlib import Path

from bench.common import BENCH_DIR, Settings, drop_pg_database, ensure_tools, log

PARTS = ("instance", "load", "api", "fleet", "provision")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, metavar="PART",
                        help=f"run only these parts ({', '.join(PARTS)}); default all")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 s cells, 1 round, fewer connection counts")
    parser.add_argument("--duration", type=float, help="seconds of load per cell and round (default 5)")
    parser.add_argument("--rounds", type=int, help="alternated rounds per cell (default 3)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny dataset and fleet (50/1,000/5,000 rows; 10/100 databases), one connection "
                             "count per cell: the smoke test's mode")
    parser.add_argument("--json", default=str(BENCH_DIR / "results.json"), help="where to write the JSON")
    return parser.parse_args(argv)


def settings_from(args) -> Settings:
    settings = Settings()
    if args.quick:
        settings.duration, settings.rounds, settings.warmup = 1.0, 1, 0.0
        settings.connections, settings.api_connections = (1, 4), (1, 8)
        settings.load_repeats = settings.provision_runs = 1
    if args.tiny:
        settings.authors, settings.posts, settings.comments = 50, 1000, 5000
        settings.fleet_sizes, settings.fleet_connections = (10, 100), (4,)
        settings.connections, settings.api_connections = (2,), (4,)
    if args.duration is not None:
        settings.duration = args.duration
    if args.rounds is not None:
        settings.rounds = args.rounds
    return settings


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    parts = [part for part in PARTS if part in (args.only or PARTS)]
    ensure_tools()
    run_id = secrets.token_hex(3)
    data_db = f"rx_bench_data_{run_id}"
    report = {
        "startedAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"duration": settings.duration, "rounds": settings.rounds,
                     "dataset": {"authors": settings.authors, "posts": settings.posts,
                                 "comments": settings.comments}},
    }
    text = []
    from bench import dataset
    try:
        if {"instance", "load", "provision"} & set(parts):
            log(f"dataset: PostgreSQL {data_db}")
            dataset.create_pg(data_db, settings.authors, settings.posts, settings.comments)
        for part in parts:
            module = __import__(f"bench.{part}", fromlist=["run", "render"])
            log(f"== {part}")
            section = module.run(settings, data_db)
            report[part] = section
            rendered = module.render(section)
            text.append(rendered)
            print(rendered, flush=True)
    finally:
        from bench import controlplane
        controlplane.close_shared()
        drop_pg_database(data_db)
        shutil.rmtree(settings.work_dir, ignore_errors=True)
    from bench import targets
    report["targets"] = targets.check(report)
    print(targets.render(report["targets"]), flush=True)
    report["finishedAt"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
