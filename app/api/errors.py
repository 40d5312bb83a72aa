"""Every error the app can emit, rendered as `{"error": code, "message": text}`."""

from __future__ import annotations

import json
import logging

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from app.api.observability import new_request_id
from app.api.ratelimit import RateLimited
from app.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
)
from app.logs import current_request_id
from app.storage.database import STORE_ERRORS, store_unavailable

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying a 503.
RETRY_AFTER = "2"

STATUS_BY_ERROR = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    Unavailable: 503,
}
CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}
DEFAULT_MESSAGES = {
    401: "a valid management key is required: send 'Authorization: Bearer rmk_<keyId>.<secret>'",
    403: "this key may not do that",
    404: "no such resource",
    405: "this method is not allowed on this path",
    413: "the request body is larger than 1 MiB",
    415: "send the body as application/json",
}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> ConnexionResponse:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers.setdefault("Retry-After", RETRY_AFTER)
    return ConnexionResponse(
        status_code=status,
        mimetype="application/json",
        content_type="application/json",
        body=json.dumps({"error": code, "message": message}, separators=(",", ":")),
        headers=headers,
    )


async def domain_error(_request: ConnexionRequest, exc: DomainError) -> ConnexionResponse:
    status = next(s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls))
    return error_response(status, exc.code, exc.message)


async def problem(_request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    """Connexion's own errors (validation, auth, content type) in our envelope."""
    status = exc.status or 500
    if status >= 500:
        return await unexpected(_request, exc)
    message = DEFAULT_MESSAGES.get(status) if status in (401, 403) else None
    return error_response(status, CODE_BY_STATUS.get(status, "invalid_request"),
                          message or _readable(exc.detail) or DEFAULT_MESSAGES.get(status, "bad request"))


async def http_error(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
    """Routing errors (unknown path, wrong method) and other bare HTTP errors."""
    if exc.status_code >= 500:
        return await unexpected(request, exc)
    message = DEFAULT_MESSAGES.get(exc.status_code) or str(exc.detail)
    if exc.status_code == 404 and request.url.path.endswith("/") and request.url.path != "/":
        # One URL per resource: no redirect to the path without the slash (it would be
        # an absolute http:// URL behind a TLS proxy, and lose the body on a POST).
        message = "no such resource: paths do not end with a slash"
    return error_response(exc.status_code, CODE_BY_STATUS.get(exc.status_code, "invalid_request"),
                          message, dict(exc.headers or {}))


async def store_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """The store does not answer: an operating condition, logged in one line without a traceback."""
    if not store_unavailable(exc):
        return await unexpected(request, exc)
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    log.warning("store unavailable, %s %s answered 503: %s", request.method, request.url.path, reason)
    return error_response(503, "unavailable", "the control plane's store does not answer; "
                                              "retry in a few seconds")


async def rate_limited(_request: ConnexionRequest, exc: RateLimited) -> ConnexionResponse:
    """A spent budget (app/api/ratelimit.py); the RateLimit-* headers are added at the edge."""
    return error_response(429, "rate_limited", exc.message, {"Retry-After": str(exc.retry_after)})


async def unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # The request's own id (X-Request-ID, app/api/observability.py): the one its log lines
    # carry. The traceback goes to the log only; the client gets the id to quote.
    request_id = current_request_id() or new_request_id()
    log.error("request %s %s failed (request id %s)", request.method, request.url.path, request_id,
              exc_info=exc)
    return error_response(500, "internal_error",
                          f"something went wrong on our side; quote request id {request_id} when reporting it")


def _readable(detail) -> str | None:
    """The first line of Connexion's own text (our validators already name the field)."""
    if not detail:
        return None
    text = str(detail).strip().splitlines()[0]
    return "the request body is required (a JSON object)" if text == "RequestBody is required" else text


def register_error_handlers(app) -> None:
    app.add_error_handler(DomainError, domain_error)
    app.add_error_handler(RateLimited, rate_limited)
    app.add_error_handler(ProblemException, problem)
    app.add_error_handler(HTTPException, http_error)
    for error in STORE_ERRORS:
        app.add_error_handler(error, store_error)
    app.add_error_handler(Exception, unexpected)
