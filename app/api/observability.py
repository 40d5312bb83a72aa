"""What the HTTP edge tells operators: request ids, one log line per request, Prometheus metrics.

`RequestObservability` is the outermost middleware of the app (before Connexion's
exception handling, so it sees every answer, errors included):

- **Request id.** A client's `X-Request-ID` is kept when it is 1-128 characters of
  `A-Z a-z 0-9 - _ . : / + =`; anything else (or none) is replaced by a new one (32 hex
  digits). The id is set in the request's scope (so `X-Request-ID` downstream is always the
  accepted one), in the `app.logs.request_id` contextvar (every log line of the request
  carries it; `app.logs.current_request_id()` reads it anywhere, on any thread of the
  request), answered as `X-Request-ID` and quoted by every 500.
- **One JSON log line per request** (logger `reflexdb.request`): operation id, method,
  path template, status, duration in ms, key id, customer id, request id. Never the query
  string, a header or a body.
- **Metrics**: requests and latency per operation, method and status.
- Headers other middlewares ask for (`add_response_headers`: the rate-limit headers) are
  added to the answer whatever produced it.

`MetricsEndpoint` answers `GET /metrics` in Prometheus' text format: the counters of every
process of this host (multiprocess mode, app/metrics.py) and, read at scrape time, the
databases per status, the live instances per health status and the job queue's depth.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from app import logs, metrics
from app.domain import health
from app.storage.database import db, store_unavailable

log = logging.getLogger(__name__)
request_log = logging.getLogger("reflexdb.request")

REQUEST_ID_HEADER = b"x-request-id"
_ACCEPTED_REQUEST_ID = re.compile(rb"[A-Za-z0-9\-_.:/+=]{1,128}")
METRICS_PATH = "/metrics"
# Label of requests that matched no operation of the spec (unknown paths, the docs, /metrics):
# never the raw path, which would give every scanner's URL a time series of its own.
NO_OPERATION = "none"
# Longest raw path a log line shows for such requests.
MAX_LOGGED_PATH = 200


@dataclass
class RequestContext:
    request_id: str
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


_current: ContextVar[RequestContext | None] = ContextVar("reflexdb_request", default=None)


def add_response_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Headers for the answer of the request being served, whatever ends up answering it."""
    context = _current.get()
    if context is not None:
        context.response_headers.extend(headers)


def new_request_id() -> str:
    return uuid.uuid4().hex


def routed_operation_id(scope) -> str | None:
    """The spec's operationId of the operation the request was routed to, if any.

    Connexion records the handler it resolved (`app.api.handlers.list_connections`); the
    handler is named after the operationId (CONTRIBUTING.md), so that is its last part.
    """
    resolved = scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
    return resolved.rsplit(".", 1)[-1] if resolved else None


def accepted_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's X-Request-ID when there is exactly one and it is within bounds."""
    values = [value for name, value in headers if name.lower() == REQUEST_ID_HEADER]
    if len(values) == 1 and _ACCEPTED_REQUEST_ID.fullmatch(values[0]):
        return values[0].decode("ascii")
    return None


@dataclass(frozen=True)
class SpecOperation:
    method: str
    path: str          # the template, with the base path: /v1/databases/{databaseId}


def spec_operations(spec: dict, base_path: str) -> dict[str, SpecOperation]:
    """operationId -> method and path template, from the spec."""
    operations = {}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                operations[operation["operationId"]] = SpecOperation(method.upper(), base_path + path)
    return operations


class ApiMetrics:
    """The API's own counters (made per app, registered in no global registry)."""

    def __init__(self):
        from prometheus_client import Counter, Histogram

        labels = ["operation", "method", "status"]
        self.requests = Counter("reflexdb_http_requests", "HTTP requests answered, by operation "
                                "(operationId; 'none' for paths outside the API), method and status.",
                                labels, registry=None)
        self.latency = Histogram("reflexdb_http_request_duration_seconds", "Time from the request's "
                                 "arrival to the end of its answer.", labels, registry=None)

        # (operation, method, status) -> its two children: `labels()` takes a lock and checks
        # its arguments on every call. Operations, methods and statuses are few; the bound
        # only keeps a flood of odd methods from growing it.
        self._children: dict[tuple[str, str, int], tuple] = {}

    def observe(self, operation: str, method: str, status: int, seconds: float) -> None:
        children = self._children.get((operation, method, status))
        if children is None:
            children = (self.requests.labels(operation, method, str(status)),
                        self.latency.labels(operation, method, str(status)))
            if len(self._children) < 4096:
                self._children[operation, method, status] = children
        children[0].inc()
        children[1].observe(seconds)


class RequestObservability:
    """Request id, per-request log line and metrics, response headers (see module docstring)."""

    def __init__(self, app, operations: dict[str, SpecOperation], api_metrics: ApiMetrics):
        self.app = app
        self.operations = operations
        self.metrics = api_metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers", [])
        request_id = accepted_request_id(headers) or new_request_id()
        # Routing and security write into scope["extensions"]; they copy the scope, so make
        # the dict first: the copies share it and it can be read here afterwards.
        extensions = scope.setdefault("extensions", {})
        scope = {**scope, "headers": [(name, value) for name, value in headers
                                      if name.lower() != REQUEST_ID_HEADER]
                 + [(REQUEST_ID_HEADER, request_id.encode())]}
        context = RequestContext(request_id)
        context_token = _current.set(context)
        request_id_token = logs.request_id.set(request_id)
        status = 500   # what the client gets if nothing answered (the server drops the request)
        started = time.perf_counter()

        async def send_with_headers(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [
                    *message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode()),
                    *context.response_headers]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            try:
                self._record(scope, extensions, status, time.perf_counter() - started)
            except Exception:
                # Recording must never fail a request (a full disk under the metric files).
                log.exception("could not record the request's log line and metrics")
            finally:
                logs.request_id.reset(request_id_token)
                _current.reset(context_token)

    def _record(self, scope, extensions, status: int, seconds: float) -> None:
        operation_id = routed_operation_id({"extensions": extensions})
        principal = extensions.get("connexion_context", {}).get("user")
        operation = self.operations.get(operation_id)
        method = scope["method"]
        path = operation.path if operation else scope.get("path", "")[:MAX_LOGGED_PATH]
        duration_ms = round(seconds * 1000, 2)
        self.metrics.observe(operation_id if operation else NO_OPERATION, method, status, seconds)
        request_log.info("%s %s %s %sms", method, path, status, duration_ms, extra={
            "operation": operation_id if operation else None,
            "method": method, "path": path, "status": status, "duration_ms": duration_ms,
            "key_id": getattr(principal, "key_id", None),
            "customer_id": str(principal.customer_id) if principal is not None else None,
        })


class FleetCollector:
    """Gauges read from the store and the job queue when /metrics is scraped."""

    def __init__(self, statuses: tuple[str, ...]):
        self.statuses = statuses

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        store_up = GaugeMetricFamily("reflexdb_store_up", "1 when the control plane's store "
                                     "answered this scrape.")
        try:
            with db.connection_context():
                fleet = health.fleet(self.statuses)
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            log.warning("metrics: the store does not answer; store figures left out")
            store_up.add_metric([], 0)
            yield store_up
            return
        store_up.add_metric([], 1)
        yield store_up
        databases = GaugeMetricFamily("reflexdb_databases", "Live (not deleted) databases by "
                                      "lifecycle status.", labels=["status"])
        for status, count in fleet.databases_by_status.items():
            databases.add_metric([status], count)
        yield databases
        instances = GaugeMetricFamily("reflexdb_instances", "Live instances by health status "
                                      "('unknown' until the first check).", labels=["health"])
        for status, count in fleet.instances_by_health.items():
            instances.add_metric([status], count)
        yield instances
        queue_up = GaugeMetricFamily("reflexdb_job_queue_up", "1 when the job queue answered "
                                     "this scrape.")
        queue_up.add_metric([], 0 if fleet.queue_depth is None else 1)
        yield queue_up
        if fleet.queue_depth is not None:
            depth = GaugeMetricFamily("reflexdb_job_queue_depth", "Engine wake-ups waiting in "
                                      "the job queue.")
            depth.add_metric([], fleet.queue_depth)
            yield depth


def metrics_registry(api_metrics: ApiMetrics, statuses: tuple[str, ...]):
    """What /metrics answers: every process's counters in multiprocess mode, this process's
    otherwise, plus the fleet gauges."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    if metrics.multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        for metric in (api_metrics.requests, api_metrics.latency, metrics.lifecycle_transitions()):
            registry.register(metric)
    registry.register(FleetCollector(statuses))
    return registry


class MetricsEndpoint:
    """`GET /metrics` (outside the API's base path, no key: it carries no secret and no
    customer's data; see docs/observability.md)."""

    def __init__(self, app, registry):
        self.app = app
        self.registry = registry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != METRICS_PATH:
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # Collecting reads metric files and queries the store: not on the event loop.
        body = await run_in_threadpool(generate_latest, self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


__all__ = ["ApiMetrics", "MetricsEndpoint", "RequestObservability", "accepted_request_id",
           "add_response_headers", "metrics_registry", "new_request_id", "spec_operations"]
