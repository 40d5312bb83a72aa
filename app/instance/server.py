"""The HTTP edge of an instance: /query, /health, /openapi.json and the admin actions.

One process, many threads: the snapshot lives in this process, so it is served
by gunicorn's gthread worker (1 worker, N threads). Every error is the
`{error, message}` envelope with Content-Type application/json.
"""

from __future__ import annotations

import json
import logging
import uuid

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from app.instance.openapi import build_openapi
from app.instance.snapshot import NoSnapshot
from app.instance.state import InstanceState
from app.query import QueryError

log = logging.getLogger(__name__)

MAX_QUERY_BYTES = 64 * 1024
TEXT_TYPES = ("", "text/plain", "application/x-www-form-urlencoded")
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An error answered with the envelope."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def create_app(state: InstanceState) -> Flask:
    """The Flask app serving `state`."""
    app = Flask("app.instance")
    app.config["MAX_CONTENT_LENGTH"] = MAX_QUERY_BYTES
    app.extensions["reflexdb_instance"] = state

    @app.before_request
    def assign_request_id():
        g.request_id = uuid.uuid4().hex

    @app.post("/query")
    def run_query():
        _require_query_key(state)
        text = _query_text()
        try:
            with state.holder.reading() as snapshot:
                rows = _execute(state, snapshot.connection, text)
        except NoSnapshot:
            code = "cap_exceeded" if state.sync.status() == "cap_exceeded" else "snapshot_loading"
            raise ApiError(503, code, _loading_message(state),
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        return _json(rows, 200)

    @app.get("/health")
    def get_health():
        return _json(state.health(), 200)

    @app.get("/openapi.json")
    def get_openapi():
        _require_query_key(state)
        return _json(build_openapi(state.artifact, database_id=state.settings.database_id,
                                   server_url=request.host_url.rstrip("/"),
                                   default_limit=state.settings.default_limit), 200)

    @app.post("/admin/reload")
    def reload_snapshot():
        _require_admin(state)
        state.sync.reload()
        return _json({"status": "reloading", "swapCount": state.holder.swap_count}, 202)

    @app.post("/admin/replication/pause")
    def pause_replication():
        _require_admin(state)
        state.sync.freeze()
        return _json({"replication_paused": True}, 200)

    @app.post("/admin/replication/resume")
    def resume_replication():
        _require_admin(state)
        state.sync.unfreeze()
        return _json({"replication_paused": False}, 200)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code, message = _HTTP_ERRORS.get(exc.code, ("http_error", exc.description or exc.name))
        if exc.code == 405:
            message = f"{request.method} is not allowed on {request.path}"
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return _error(exc.code or 500, code, message, headers)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("request %s failed", g.get("request_id"))
        return _error(500, "internal_error",
                      f"internal error; request id {g.get('request_id', '-')}")

    @app.after_request
    def add_request_id(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    return app


_HTTP_ERRORS = {
    404: ("not_found", "no such endpoint; the instance serves POST /query, GET /health and "
                       "GET /openapi.json"),
    405: ("method_not_allowed", ""),
    413: ("payload_too_large", f"the query is over {MAX_QUERY_BYTES // 1024} KiB"),
}


def _execute(state: InstanceState, connection, text: str):
    """Run `text` on a snapshot connection, with its compiled plan cached."""
    try:
        return state.queries.execute(connection, text)
    except QueryError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None


def _query_text() -> str:
    length = request.content_length
    if length is not None and length > MAX_QUERY_BYTES:
        raise ApiError(413, "payload_too_large",
                       f"the query is over {MAX_QUERY_BYTES // 1024} KiB")
    mimetype = request.mimetype
    # The query is text whatever the client calls it: nothing, or curl's default
    # for -d/--data-binary (form, which curl does not encode), is taken as text.
    if mimetype not in TEXT_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"the query body must be text/plain, not {mimetype}")
    raw = request.get_data(cache=False)
    try:
        text = raw.decode(request.mimetype_params.get("charset", "utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise ApiError(400, "invalid_query", "the query is not valid UTF-8 text") from None
    if not text.strip():
        raise ApiError(400, "invalid_query", "the query is empty; send e.g. `users { id }`")
    return text


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _require_query_key(state: InstanceState) -> None:
    if not state.keys.verify(_bearer()):
        raise ApiError(401, "unauthorized",
                       "a valid query key is required: send Authorization: Bearer rxk_…",
                       {"WWW-Authenticate": 'Bearer realm="reflexdb"'})


def _require_admin(state: InstanceState) -> None:
    if not state.check_admin_token(_bearer()):
        raise ApiError(401, "unauthorized", "the instance admin token is required",
                       {"WWW-Authenticate": 'Bearer realm="reflexdb-admin"'})


def _loading_message(state: InstanceState) -> str:
    status = state.sync.status()
    if status == "cap_exceeded":
        return f"no snapshot is loaded: {state.sync.last_error}"
    if state.sync.last_error:
        return "no snapshot is loaded yet: the last load failed; see the database's health"
    return "the snapshot is still loading; retry shortly"


def _json(body, status: int, headers: dict | None = None) -> Response:
    try:
        # orjson: several times faster than json on large answers (docs/benchmarks.md).
        text = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits, which orjson refuses; json writes them exactly.
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Response(text, status=status, headers=headers,
                    content_type="application/json; charset=utf-8")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return _json({"error": code, "message": message}, status, headers)


__all__ = ["ApiError", "MAX_QUERY_BYTES", "create_app"]
