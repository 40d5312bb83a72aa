"""Snapshot load speed: the instance loading the dataset, against pg_dump and mysqldump of it.

The instance's figure is its own (`/health` loadRowsPerSecond: stream from the source, insert
into SQLite, index, analyse); the dumps' is rows / wall time of the tool writing to /dev/null.
Each round runs every system once, in turn: first loads at start, then reloads.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

from bench import dataset
from bench.common import MARIADB, PG, Settings, alternate, log, median, ratio, table
from bench.instance import start_instance, wait_serving


def _dump_rows_per_second(args: list[str], rows: int) -> float:
    started = time.monotonic()
    with open("/dev/null", "wb") as sink:
        subprocess.run(args, stdout=sink, stderr=subprocess.PIPE, check=True)
    return rows / (time.monotonic() - started)


def run(settings: Settings, dbname: str) -> dict:
    rows = settings.authors + settings.posts + settings.comments
    maria = dbname.replace("rx_bench_data_", "rx_bench_maria_")
    log(f"load: MariaDB {maria}")
    dataset.create_mariadb(maria, settings.authors, settings.posts, settings.comments)
    instances = []
    try:
        for backend, source_db in (("postgres", dbname), ("mysql", maria)):
            runtime, handle, _ = start_instance(settings, source_db, backend, f"load-{backend}")
            instances.append((runtime, handle))
        first = {f"instance from {'PostgreSQL' if b == 'postgres' else 'MariaDB'}":
                 runtime.health(handle)["loadRowsPerSecond"]
                 for (runtime, handle), b in zip(instances, ("postgres", "mysql"), strict=True)}

        def reload(pair):
            runtime, handle = pair
            before = runtime.health(handle)["lastSyncAt"]
            runtime.reload(handle)
            return wait_serving(runtime, handle, after=before)["loadRowsPerSecond"]

        pg_dump = ["pg_dump", "-h", PG["host"], "-p", str(PG["port"]), "-U", PG["user"], "--data-only",
                   *[a for t in dataset.TABLES for a in ("-t", f"{dataset.SCHEMA}.{t}")], dbname]
        mysqldump = ["mysqldump", "-h", MARIADB["host"], "-P", str(MARIADB["port"]), "-u", MARIADB["user"],
                     "--single-transaction", maria, *dataset.TABLES]
        systems = {"instance from PostgreSQL": lambda: reload(instances[0]),
                   "instance from MariaDB": lambda: reload(instances[1]),
                   "pg_dump": lambda: _dump_rows_per_second(pg_dump, rows),
                   "mysqldump": lambda: _dump_rows_per_second(mysqldump, rows)}
        log(f"load: {settings.load_repeats} rounds")
        samples = alternate(systems, settings.load_repeats, lambda name, fn: fn())
    finally:
        for runtime, handle in instances:
            runtime.stop(handle)
        with contextlib.suppress(Exception):
            dataset.drop_mariadb(maria)
    result = {name: {"rowsPerSecond": round(median(values)), "rounds": [round(v) for v in values]}
              for name, values in samples.items()}
    for name, value in first.items():
        result[name]["firstLoadRowsPerSecond"] = value
    pg, my = result["pg_dump"]["rowsPerSecond"], result["mysqldump"]["rowsPerSecond"]
    for entry in result.values():
        entry["vsPgDump"] = ratio(entry["rowsPerSecond"], pg)
        entry["vsMysqldump"] = ratio(entry["rowsPerSecond"], my)
    return {"rows": rows, "systems": result}


def render(section: dict) -> str:
    rows = [[name, v["rowsPerSecond"], v["vsPgDump"], v["vsMysqldump"]]
            for name, v in section["systems"].items()]
    return table(f"Snapshot load, {section['rows']:,} rows (median rows/s)",
                 ["system", "rows/s", "× pg_dump", "× mysqldump"], rows)
