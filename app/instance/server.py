"""The HTTP edge of an instance: /query, /health, /openapi.json and the admin actions.

Served by each reader process (gunicorn workers, a few threads each) over the
store's current generation; the admin actions are handed to the writer
process. Every error is the
`{error, message}` envelope with Content-Type application/json, whatever
happens while a request is served: nothing a request does may end the process.
"""

from __future__ import annotations

import io
import json
import logging
import resource
import sqlite3
import time
import uuid

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from app.contracts.query_limits import QueryLimits
from app.instance.memory import current_usage
from app.instance.openapi import build_openapi
from app.instance.snapshot import NoSnapshot
from app.instance.state import InstanceState, WriterUnavailable
from app.query import Answer, QueryError, QueryLimitError, answer_too_large

log = logging.getLogger(__name__)

TEXT_TYPES = ("", "text/plain", "application/x-www-form-urlencoded")
RETRY_AFTER_SECONDS = 5
MIB = 1024 * 1024

# orjson aborts the process when an allocation fails (measured: SIGSEGV under
# RLIMIT_DATA) where the json module raises MemoryError. It may only encode
# when the memory left covers the worst case: escapes (up to 6 bytes per
# character counted) and its buffer growing by doubling, plus a margin for
# the other request threads.
_ESCAPE_FACTOR = 6
_BUFFER_FACTOR = 2
_ENCODE_MARGIN = 32 * MIB

# Pre-encoded, so it can be sent when nothing else can be built.
_LAST_RESORT_BODY = b'{"error":"internal_error","message":"internal error"}'


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
    limits = state.settings.limits
    app = Flask("app.instance")
    app.extensions["reflexdb_instance"] = state
    app.wsgi_app = _last_resort(_query_fast_path(state, app.wsgi_app))

    @app.before_request
    def assign_request_id():
        g.request_id = uuid.uuid4().hex

    @app.post("/query")
    def run_query():
        _require_query_key(state)
        text = _query_text(limits)
        return Response(_answer(state, text), status=200,
                        content_type="application/json; charset=utf-8")

    @app.get("/health")
    def get_health():
        return _json(state.health(), 200)

    @app.get("/openapi.json")
    def get_openapi():
        _require_query_key(state)
        return _json(build_openapi(state.artifact, database_id=state.settings.database_id,
                                   server_url=request.host_url.rstrip("/"),
                                   limits=limits), 200)

    @app.post("/admin/reload")
    def reload_snapshot():
        _require_admin(state)
        writer = _writer_command(state, "reload")
        return _json({"status": "reloading", "swapCount": writer["swapCount"]}, 202)

    @app.post("/admin/replication/pause")
    def pause_replication():
        _require_admin(state)
        writer = _writer_command(state, "pause")
        return _json({"replication_paused": writer["replicationPaused"]}, 200)

    @app.post("/admin/replication/resume")
    def resume_replication():
        _require_admin(state)
        writer = _writer_command(state, "resume")
        return _json({"replication_paused": writer["replicationPaused"]}, 200)

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

    @app.errorhandler(MemoryError)
    def out_of_memory(exc: MemoryError):
        return api_error(_out_of_memory())

    @app.errorhandler(sqlite3.Error)
    def sqlite_error(exc: sqlite3.Error):
        # SQLite's heap limit (app/instance/memory.py) fails a statement with
        # "out of memory"; anything else is a defect, logged with its traceback.
        if _is_out_of_memory(exc):
            return api_error(_out_of_memory())
        return unexpected_error(exc)

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
}


def _answer(state: InstanceState, text: str) -> bytes:
    """The encoded answer to query `text`, from the answer cache or the snapshot; raises ApiError."""
    # Same text, same generation and data version: the same bytes.
    version = state.reader.refresh()
    body = state.answers.get(text, version) if version is not None else None
    if body is not None:
        return body
    try:
        with state.reader.reading(refresh=False) as (connection, version):
            # SQLite writes the whole answer when it can (app.query.jsonsql).
            result = state.queries.respond(connection, text)
    except NoSnapshot:
        code = "cap_exceeded" if state.status() == "cap_exceeded" else "snapshot_loading"
        raise ApiError(503, code, _loading_message(state),
                       {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except QueryLimitError as exc:
        raise limit_error(exc) from None
    except QueryError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    body = result if type(result) is bytes else _answer_body(result, state.settings.limits)
    state.answers.put(text, version, body)
    return body


# Content types the fast path takes as they are sent (anything else goes to Flask,
# which parses it as _query_text does).
_FAST_TYPES = frozenset({"", "text/plain", "text/plain; charset=utf-8", "text/plain;charset=utf-8",
                         "text/plain; charset=UTF-8", "application/x-www-form-urlencoded"})


def _query_fast_path(state: InstanceState, wsgi_app):
    """POST /query without Flask's dispatch: the same answers, headers and envelopes.

    A well-formed request with a valid key is answered here (the answer or the
    query's error envelope); any other request, and any unexpected exception,
    goes to the Flask app, which answers it as always (the body already read
    is handed over). Flask's request machinery cost more CPU than a point
    lookup's query (docs/benchmarks.md).
    """
    limits = state.settings.limits
    max_bytes = limits.max_query_bytes

    def app(environ, start_response):
        if (environ.get("PATH_INFO") != "/query" or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("CONTENT_TYPE", "") not in _FAST_TYPES
                or not state.keys.verify(_bearer_of(environ.get("HTTP_AUTHORIZATION", "")))):
            return wsgi_app(environ, start_response)
        length = environ.get("CONTENT_LENGTH")
        if length and (not length.isdigit() or int(length) > max_bytes):
            return wsgi_app(environ, start_response)
        raw = environ["wsgi.input"].read(max_bytes + 1)
        try:
            text = raw.decode() if len(raw) <= max_bytes else ""
        except UnicodeDecodeError:
            text = ""
        if not text.strip():
            return _hand_over(wsgi_app, environ, start_response, raw)
        request_id = uuid.uuid4().hex
        try:
            body = _answer(state, text)
        except ApiError as exc:
            response = _error(exc.status, exc.code, exc.message, exc.headers)
            response.headers["X-Request-Id"] = request_id
            return response(environ, start_response)
        except Exception:  # the Flask app's handlers log and answer it
            return _hand_over(wsgi_app, environ, start_response, raw)
        start_response("200 OK", [("Content-Type", "application/json; charset=utf-8"),
                                  ("Content-Length", str(len(body))),
                                  ("X-Request-Id", request_id)])
        return [body]
    return app


def _hand_over(wsgi_app, environ, start_response, raw: bytes):
    environ["wsgi.input"] = io.BytesIO(raw)
    return wsgi_app(environ, start_response)


def limit_error(exc: QueryLimitError) -> ApiError:
    """A query over one of the instance's limits: 400 `limit_exceeded` (413 for the text size)."""
    if exc.limit == "maxQueryBytes":
        return ApiError(413, "payload_too_large", str(exc))
    return ApiError(400, "limit_exceeded", str(exc))


def _too_long(limits: QueryLimits) -> QueryLimitError:
    return QueryLimitError(f"the query is over {limits.max_query_bytes} bytes",
                           limit="max_query_bytes", value=limits.max_query_bytes)


def _out_of_memory() -> ApiError:
    return ApiError(503, "unavailable", "the instance has no memory left for this answer right "
                    "now; retry shortly, or ask for fewer rows",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _is_out_of_memory(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", None) == 7  # SQLITE_NOMEM
            or "out of memory" in str(exc).lower())


def _query_text(limits: QueryLimits) -> str:
    length = request.content_length
    if length is not None and length > limits.max_query_bytes:
        raise limit_error(_too_long(limits))
    mimetype = request.mimetype
    # The query is text whatever the client calls it: nothing, or curl's default
    # for -d/--data-binary (form, which curl does not encode), is taken as text.
    if mimetype not in TEXT_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"the query body must be text/plain, not {mimetype}")
    # Read here rather than by Werkzeug, whose size limit cuts a chunked body
    # short without a word. The server's input ends with the body, chunked or not.
    raw = request.environ["wsgi.input"].read(limits.max_query_bytes + 1)
    if len(raw) > limits.max_query_bytes:
        raise limit_error(_too_long(limits))
    try:
        text = raw.decode(request.mimetype_params.get("charset", "utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise ApiError(400, "invalid_query", "the query is not valid UTF-8 text") from None
    if not text.strip():
        raise ApiError(400, "invalid_query", "the query is empty; send e.g. `users { id }`")
    return text


def _writer_command(state: InstanceState, name: str) -> dict:
    try:
        return state.writer.command(name)
    except WriterUnavailable:
        raise ApiError(503, "unavailable", "the instance's writer is restarting; retry shortly",
                       {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None


def _answer_body(answer: Answer, limits: QueryLimits) -> bytes:
    """The answer encoded, never larger than max_answer_bytes, never at the cost of the process."""
    if _orjson_is_safe(answer.estimated_bytes):
        body = _encode(answer.objects)
    else:  # json raises MemoryError where orjson would end the process
        body = json.dumps(answer.objects, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > limits.max_answer_bytes:
        raise limit_error(answer_too_large(limits))
    return body


# The last VmData reading: (monotonic time, bytes). Reading /proc on every
# answer showed in the profile; a reading younger than this is trusted for
# answers needing at most half the room it left (the other half covers what
# other threads allocated since).
_USAGE_MAX_AGE_SECONDS = 0.1
_last_usage = (float("-inf"), 0)


def _orjson_is_safe(estimated_bytes: int) -> bool:
    """True when the memory left could hold orjson's worst case for an answer this size."""
    global _last_usage
    soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
    if soft == resource.RLIM_INFINITY:
        return True
    need = estimated_bytes * _ESCAPE_FACTOR * _BUFFER_FACTOR + _ENCODE_MARGIN
    read_at, in_use = _last_usage
    now = time.monotonic()
    if now - read_at < _USAGE_MAX_AGE_SECONDS and (soft - in_use) // 2 >= need:
        return True
    in_use = current_usage().get("VmData", 0) * 1024
    _last_usage = (now, in_use)
    return soft - in_use >= need


def _bearer() -> str | None:
    return _bearer_of(request.headers.get("Authorization", ""))


def _bearer_of(header: str) -> str | None:
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
    status = state.status()
    if status == "cap_exceeded":
        return f"no snapshot is loaded: {state.last_error()}"
    if state.last_error():
        return "no snapshot is loaded yet: the last load failed; see the database's health"
    return "the snapshot is still loading; retry shortly"


def _encode(body) -> bytes:
    try:
        # orjson: several times faster than json on large answers (docs/benchmarks.md).
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits, which orjson refuses: json writes them exactly.
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Lone surrogates (not UTF-8): written as \u escapes, which JSON allows.
        return json.dumps(body, separators=(",", ":")).encode()


def _json(body, status: int, headers: dict | None = None) -> Response:
    return Response(_encode(body), status=status, headers=headers,
                    content_type="application/json; charset=utf-8")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return _json({"error": code, "message": message}, status, headers)


def _last_resort(wsgi_app):
    """Answer a fixed 500 envelope when even the error handlers fail (e.g. out of memory)."""
    def app(environ, start_response):
        try:
            return wsgi_app(environ, start_response)
        except Exception:
            try:
                log.exception("request failed and so did its error handler")
            except Exception:  # noqa: S110 - nothing left to report it with
                pass
            # Flask starts the response only once it is built, so nothing was sent yet.
            start_response("500 INTERNAL SERVER ERROR",
                           [("Content-Type", "application/json; charset=utf-8"),
                            ("Content-Length", str(len(_LAST_RESORT_BODY)))])
            return [_LAST_RESORT_BODY]
    return app


__all__ = ["ApiError", "create_app", "limit_error"]
