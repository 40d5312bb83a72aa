"""gunicorn settings for the control plane. Connexion 3 is ASGI: it needs an ASGI worker.

Installed, this file is `app/resources/gunicorn_conf.py`:
`gunicorn --config python:app.resources.gunicorn_conf` runs from any directory.

Migrations are not run here: run `reflexdb migrate` before starting (`reflexdb serve`
does both).

The values come from the same settings definitions as the app and the CLI
(app/config.py, README "Settings"): REFLEXDB_BIND, REFLEXDB_WORKERS,
REFLEXDB_TIMEOUT, REFLEXDB_ACCESS_LOG. Every setting is checked here, in the
master, so a bad value stops the start with one line per setting instead of a
traceback in each worker; the store and the spec are checked at `on_starting`.

Logs are JSON lines (app/logs.py), gunicorn's and uvicorn's own included. The
hooks below run Prometheus' multiprocess mode (docs/observability.md): the
workers write their metrics to files in one directory, which /metrics adds up.
"""

import os
import sys
from pathlib import Path

from app.config import Settings, SettingsError
from app.logs import gunicorn_logconfig
from app.metrics import use_multiprocess_dir

try:
    _settings = Settings.from_env()
except SettingsError as _exc:
    # gunicorn prints a traceback for any Exception raised here; SystemExit is not one.
    sys.exit("\n".join(f"reflexdb: {line}" for line in _exc.problems))

# A factory gunicorn calls in each worker; importable from any directory once installed.
wsgi_app = "app.serving:asgi_app()"
# uvicorn's worker, draining its connections when it stops (reload, stop, restart): app/serving.py.
worker_class = "app.serving.DrainingUvicornWorker"
bind = _settings.bind
workers = _settings.workers
timeout = _settings.timeout
graceful_timeout = 20
keepalive = 5
accesslog = _settings.access_log
logconfig_dict = gunicorn_logconfig(_settings.log_level, _settings.access_log)
# gunicorn's control socket defaults to one path per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn/gunicorn.ctl): a second deployment by the same user would take it
# over, and stopping either deletes it. Nothing here uses it.
control_socket_disable = True


# -- start-up checks ----------------------------------------------------------------------------

def refuse_a_broken_start(server) -> None:
    """Before binding or forking: stop with one line per problem unless the store is reachable
    and migrated and the API builds from the spec (app/serving.py). Run at start only: gunicorn
    cannot call a reload (HUP) off, so check a release before reloading (docs/deploy.md)."""
    from app.serving import run_checks

    problems = run_checks()
    if problems:
        sys.exit("\n".join(f"reflexdb: {line}" for line in problems))


def on_starting(server):
    """Before binding or forking: refuse a broken start, then prepare the metric files."""
    refuse_a_broken_start(server)
    prepare_metrics_dir(server)


def prepare_metrics_dir(server) -> None:
    """Point the workers at the metric files directory (they inherit the environment) and
    drop the files of processes that are gone (an earlier run's)."""
    directory = use_multiprocess_dir(_settings.data_dir)
    for path in directory.glob("*.db"):
        if not _alive(_pid_of(path)):
            path.unlink(missing_ok=True)
    server.log.info("metrics: multiprocess files in %s", directory)


def child_exit(server, worker):
    """A worker is gone: its live gauges stop counting (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _pid_of(path: Path) -> int | None:
    # prometheus-client names its files <kind>_<pid>.db (gauges: gauge_<mode>_<pid>.db).
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
