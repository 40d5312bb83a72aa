"""Prometheus metrics shared by the processes of one host (prometheus-client, multiprocess mode).

The API's gunicorn workers and the engine worker each write their counters to files in one
directory, `PROMETHEUS_MULTIPROC_DIR` (default `$REFLEXDB_DATA_DIR/metrics`), and
`GET /metrics` on any API worker adds them up (app/api/observability.py). prometheus-client
reads that variable once, when it is first imported, so each process calls
`use_multiprocess_dir` at start, before anything imports it: gunicorn.conf.py for the API
(in the master, so every worker inherits it) and `reflexdb worker` for the engine. A process
that never called it (the test client, `uvicorn wsgi:app`) keeps its metrics in memory.

Metric objects are made on first use, not at import, and registered in no global registry:
the API's /metrics builds the registry it answers from.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(data_dir: Path) -> Path:
    """Where this host's processes keep their metric files."""
    configured = os.environ.get(MULTIPROC_ENV)
    return Path(configured) if configured else Path(data_dir).resolve() / "metrics"


def use_multiprocess_dir(data_dir: Path) -> Path:
    """Make the metric files directory and point prometheus-client at it (for this process
    and its children); returns it. Call before prometheus_client is imported."""
    directory = metrics_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


@cache
def lifecycle_transitions():
    """Counter of database status changes the engine committed, by from/to status."""
    from prometheus_client import Counter

    return Counter("reflexdb_lifecycle_transitions", "Database status changes committed by the "
                   "lifecycle engine.", ["from_status", "to_status"], registry=None)


def count_transition(from_status: str, to_status: str) -> None:
    """Count one committed status change (a step that keeps its status counts too)."""
    lifecycle_transitions().labels(from_status=from_status, to_status=to_status).inc()


__all__ = ["MULTIPROC_ENV", "count_transition", "lifecycle_transitions", "metrics_dir",
           "multiprocess_mode", "use_multiprocess_dir"]
