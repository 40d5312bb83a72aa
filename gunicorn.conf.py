"""gunicorn settings for the control plane. Connexion 3 is ASGI: it needs an ASGI worker.

Migrations are not run here: run `reflexdb migrate` before starting (`reflexdb serve`
does both).

The values come from the same settings definitions as the app and the CLI
(app/config.py, README "Settings"): REFLEXDB_BIND, REFLEXDB_WORKERS,
REFLEXDB_TIMEOUT, REFLEXDB_ACCESS_LOG. Every setting is checked here, in the
master, so a bad value stops the start with one line per setting instead of a
traceback in each worker.
"""

import sys

from app.config import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as _exc:
    # gunicorn prints a traceback for any Exception raised here; SystemExit is not one.
    sys.exit("\n".join(f"reflexdb: {line}" for line in _exc.problems))

wsgi_app = "wsgi:app"
worker_class = "uvicorn_worker.UvicornWorker"
bind = _settings.bind
workers = _settings.workers
timeout = _settings.timeout
graceful_timeout = 20
keepalive = 5
accesslog = _settings.access_log
# gunicorn's control socket defaults to one path per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn/gunicorn.ctl): a second deployment by the same user would take it
# over, and stopping either deletes it. Nothing here uses it.
control_socket_disable = True
