"""The spec as written (YAML, and the same document as JSON) and the HTML reference built from
it, served beside the Swagger UI."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.exceptions import HTTPException
from starlette.routing import Mount

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


class ExplorerMiddleware(SwaggerUIMiddleware):
    """Connexion's Swagger UI middleware, entered only by requests that may be for its pages.

    Connexion's middleware sends every request through a Starlette router (a mount per API, a regular
    expression each) before handing it on when nothing matched: about 2% of a GET's CPU on
    every API call (docs/control-plane-performance.md). Here a request whose path holds none
    of its routes' first segments (`/ui`, `/openapi.json`, `/openapi.yaml`) goes straight on,
    as the router's default would send it; the others take Connexion's way.
    """

    def __init__(self, app):
        super().__init__(app)
        self._markers: frozenset[str] = frozenset()

    def add_api(self, specification, base_path=None, arguments=None, **kwargs) -> None:
        super().add_api(specification, base_path=base_path, arguments=arguments, **kwargs)
        markers = set(self._markers)
        for mount in self.router.routes:
            if isinstance(mount, Mount):
                markers.update("/" + route.path.lstrip("/").split("/", 1)[0] for route in mount.routes)
        self._markers = frozenset(markers)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not any(marker in scope["path"] for marker in self._markers):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
