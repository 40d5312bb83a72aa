"""The audit trail at the HTTP edge: each mutating request's id, source, resource and outcome.

Every authenticated POST, PUT, PATCH and DELETE gets one audit entry (app/domain/audit.py):

- a request its operation handled is recorded by app/api/mutations.py, in the operation's
  transaction (so an effect never commits without its entry);
- `AuditTrail`, an ASGI middleware right after authentication, records the requests refused
  before their operation ran (the spec's validation: 400, 415), and gives every request the
  facts both need: its request id and source IP.

Requests without a valid key (401) belong to no account and are not recorded.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

from connexion.exceptions import ProblemException
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from app.api import idempotency
from app.api.observability import new_request_id
from app.domain import audit
from app.domain.errors import DomainError
from app.logs import current_request_id
from app.storage.database import STORE_ERRORS, db, store_unavailable

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Where the request's facts travel from the middleware to the handler thread (the ASGI scope).
SCOPE_KEY = "reflexdb.request"
@dataclass
class RequestFacts:
    """What the audit entry of one request needs beyond the operation: its id, its source, whether it is recorded."""

    request_id: str
    source_ip: str | None
    recorded: bool = False


def request_id(headers) -> str:
    """The request's id: the one RequestObservability accepted or made (app/api/observability.py),
    which it also writes back into the request's X-Request-ID header."""
    return current_request_id() or headers.get("x-request-id") or new_request_id()


def facts_of(scope: dict) -> RequestFacts | None:
    return scope.get("extensions", {}).get(SCOPE_KEY)


def resource_of(path: str, path_params: dict, location: str | None = None) -> tuple[str | None, uuid.UUID | None]:
    """The (type, id) a request names or creates, from its path, its path parameters and a 201's Location.

    A create answered with `Location: …/api-keys/<id>` is about that key (`api_key`); otherwise
    the resource is the last id in the path (`/databases/<id>/provision`: the database), and a
    create that failed names only its type (`/connections`: `connection`).
    """
    if location:
        *_, collection, ident = location.rstrip("/").split("/")
        return _singular(collection), _uuid(ident)
    segments = path.rstrip("/").split("/")
    names = {str(value): name for name, value in path_params.items()}
    for segment in reversed(segments):
        if segment in names:
            return _snake(names[segment].removesuffix("Id")), _uuid(segment)
    return _singular(segments[-1]) if segments[-1] else None, None


def status_of(error: BaseException) -> int:
    """The status app/api/errors.py answers `error` with."""
    from app.api.errors import STATUS_BY_ERROR

    if isinstance(error, DomainError):
        return next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(error, cls)), 500)
    if isinstance(error, ProblemException):
        return error.status or 500
    if isinstance(error, HTTPException):
        return error.status_code
    if isinstance(error, STORE_ERRORS) and store_unavailable(error):
        return 503
    return 500


def write(entry: audit.Entry) -> None:
    """Record `entry` in a transaction of its own; a store that refuses it is logged, never silent."""
    try:
        with db.atomic():
            audit.record(entry)
    except Exception as exc:   # the request's own answer must still go out
        log.error("audit entry lost (request id %s, %s %s by key %s, status %s): %s",
                  entry.request_id, entry.operation_id, entry.resource_id or entry.resource_type,
                  entry.key_id, entry.status, type(exc).__name__)


class AuditTrail:
    """ASGI middleware after authentication: request facts for every mutating request, and the entries
    of those refused before their operation ran."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            return await self.app(scope, receive, send)
        client = scope.get("client")
        facts = RequestFacts(request_id(Headers(scope=scope)), client[0] if client else None)
        scope.setdefault("extensions", {})[SCOPE_KEY] = facts
        status = None

        async def watched_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            await self._record_refusal(scope, facts, status_of(exc))
            raise
        if status is not None:
            await self._record_refusal(scope, facts, status)

    @staticmethod
    async def _record_refusal(scope, facts: RequestFacts, status: int) -> None:
        extensions = scope.get("extensions", {})
        principal = extensions.get("connexion_context", {}).get("user")
        if facts.recorded or principal is None:
            return
        facts.recorded = True
        resource_type, resource_id = resource_of(scope.get("path", ""), scope.get("path_params", {}))
        headers = Headers(scope=scope)
        entry = audit.Entry(
            customer_id=principal.customer_id, key_id=principal.key_id,
            operation_id=_operation_id(extensions),
            status=status, request_id=facts.request_id, resource_type=resource_type,
            resource_id=resource_id, source_ip=facts.source_ip,
            idempotency_key=idempotency.key_of(headers) if scope["method"] == "POST" else None)
        await run_in_threadpool(_write_on_own_connection, entry)


def _operation_id(extensions: dict) -> str:
    """The spec's operationId (Connexion's routing holds the handler's dotted name)."""
    resolved = extensions.get("connexion_routing", {}).get("operation_id") or "unknown"
    return resolved.rsplit(".", 1)[-1]


def _write_on_own_connection(entry: audit.Entry) -> None:
    with db.connection_context():
        write(entry)


def _singular(collection: str) -> str:
    """`api-keys` -> `api_key`, `databases` -> `database`."""
    return collection.removesuffix("s").replace("-", "_")


def _snake(name: str) -> str:
    """`apiKey` -> `api_key`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
