"""The spec as written (YAML, and the same document as JSON) and the HTML reference built from
it, served beside the Swagger UI."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml
from starlette.exceptions import HTTPException

from app.domain.errors import NotFound

log = logging.getLogger(__name__)

# `scripts/spec.py reference` writes the reference beside the spec it describes.
REFERENCE_NAME = "reference.html"
REBUILD = "rebuild it with `.venv/bin/python scripts/spec.py reference`"
# Redoc's static page carries the document it renders as one JSON line.
_EMBEDDED = re.compile(r"const __redoc_definition = (.*);\n")


def embedded_spec(html: str) -> dict | None:
    """The spec a Redoc static page (redocly build-docs) renders, or None if it carries none."""
    match = _EMBEDDED.search(html)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


class SpecDocuments:
    """ASGI middleware answering `GET {base}/openapi.yaml` with the spec file byte for byte,
    `GET {base}/openapi.json` with the same document as JSON, and `GET {base}/reference` with
    the HTML reference built from it, when it was built from it.

    The JSON keeps the file's `$ref`s (Connexion's own `openapi.json` inlines every one, which
    makes it about five times the size); the Swagger UI at `{base}/ui/` reads this one and
    resolves the references itself.
    """

    def __init__(self, app, spec_path: Path):
        self.app = app
        # Read once, like Connexion reads the spec it routes by: what is served is what runs.
        self.spec_bytes = Path(spec_path).read_bytes()
        self.spec_json = json.dumps(yaml.safe_load(self.spec_bytes), ensure_ascii=False,
                                    separators=(",", ":")).encode()
        self.reference_path = Path(spec_path).with_name(REFERENCE_NAME)
        base = urlparse((yaml.safe_load(self.spec_bytes).get("servers") or [{}])[0].get("url", "")).path
        self.routes = {f"{base.rstrip('/')}/openapi.yaml": self._spec,
                       f"{base.rstrip('/')}/openapi.json": self._spec_as_json,
                       f"{base.rstrip('/')}/reference": self._reference}
        self._reference_page: bytes | NotFound | None = None  # loaded at the first request

    async def __call__(self, scope, receive, send):
        route = self.routes.get(scope.get("path")) if scope["type"] == "http" else None
        if route is None:
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        body, content_type = route()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _spec(self) -> tuple[bytes, bytes]:
        return self.spec_bytes, b"application/yaml; charset=utf-8"

    def _spec_as_json(self) -> tuple[bytes, bytes]:
        return self.spec_json, b"application/json"

    def _reference(self) -> tuple[bytes, bytes]:
        if self._reference_page is None:
            try:
                self._reference_page = self._load_reference()
            except NotFound as refused:  # remembered too: a missing page is not re-read per request
                self._reference_page = refused
        if isinstance(self._reference_page, NotFound):
            raise self._reference_page
        return self._reference_page, b"text/html; charset=utf-8"

    def _load_reference(self) -> bytes:
        """The built page, refused (404) when missing or built from another version of the spec:
        a stale reference would document an API the server does not serve."""
        try:
            page = self.reference_path.read_bytes()
        except FileNotFoundError:
            log.warning("no API reference beside the spec (%s): %s", REFERENCE_NAME, REBUILD)
            raise NotFound(f"no API reference is built for this spec: {REBUILD}") from None
        if embedded_spec(page.decode("utf-8", "replace")) != yaml.safe_load(self.spec_bytes):
            log.warning("the API reference (%s) was built from another version of the spec: %s",
                        REFERENCE_NAME, REBUILD)
            raise NotFound(f"the API reference was built from another version of the spec: {REBUILD}")
        return page
