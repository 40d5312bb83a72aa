"""The files the package serves and runs with: the spec, its HTML reference, the gunicorn settings.

In a checkout each file here is a symlink to the file teams edit (`openapi/openapi.yaml`,
`openapi/reference.html`, `gunicorn.conf.py`): one source, nothing to keep in step. Building a
wheel or an sdist copies what the links point at, so an installed package carries real files and
works from any directory. tests/test_packaging.py fails if a link is replaced by a copy.
"""

from __future__ import annotations

from pathlib import Path

# Not resolved: in a checkout the path stays inside the package (the links), so the
# reference is still found "beside the spec" wherever the spec is read from.
SPEC = Path(__file__).absolute().parent / "openapi.yaml"
REFERENCE = SPEC.with_name("reference.html")
# gunicorn loads it with `--config python:app.resources.gunicorn_conf` (docs/deploy.md).
GUNICORN_CONFIG_MODULE = "app.resources.gunicorn_conf"
GUNICORN_CONFIG = f"python:{GUNICORN_CONFIG_MODULE}"

__all__ = ["GUNICORN_CONFIG", "GUNICORN_CONFIG_MODULE", "REFERENCE", "SPEC"]
