"""gunicorn settings for the control plane. Connexion 3 is ASGI: it needs an ASGI worker.

Migrations are not run here: run `reflexdb migrate` before starting (`reflexdb serve`
does both).

Every setting can be overridden with the environment variable named beside it.
"""

import multiprocessing
import os

wsgi_app = "wsgi:app"
worker_class = "uvicorn_worker.UvicornWorker"
bind = os.environ.get("REFLEXDB_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("REFLEXDB_WORKERS", multiprocessing.cpu_count()))
timeout = int(os.environ.get("REFLEXDB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("REFLEXDB_ACCESS_LOG", "-") or None  # empty: no access log
