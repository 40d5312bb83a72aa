"""Entry point for ASGI servers run from a checkout: `gunicorn wsgi:app` (see gunicorn.conf.py).

Installed, use the factory instead: `gunicorn --config python:app.resources.gunicorn_conf`
serves `app.serving:asgi_app()`. A refused setting is one line and exit status 4, not a traceback.
"""

from app.serving import asgi_app

app = asgi_app()
