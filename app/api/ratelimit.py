"""Request budgets per management key, counted with the `limits` library.

Two budgets, each a fixed window per management key (`REFLEXDB_RATE_LIMIT`,
`REFLEXDB_SOURCE_RATE_LIMIT`): every authenticated request spends one unit of the `api`
budget; an operation the spec marks `x-rate-limit-budget: source` (the actions that make
the engine read the customer's source database) also spends one of the lower `source`
budget. Past either, the answer is 429 `rate_limited` with `Retry-After`.

The check is an ASGI middleware right after Connexion's security middleware: the key is
known by then (no store round trip of its own) and the handler has not run. Its verdict
goes out as `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (IETF
draft-ietf-httpapi-ratelimit-headers, delta seconds) on every authenticated response,
errors included (app/api/observability.py adds them at the edge), for the budget closest
to running out.

The counters live in this process (one budget per API worker) or, with
`REFLEXDB_REDIS_URL`, in Redis, shared by every worker on every host. When Redis does not
answer, requests go through uncounted (and a warning is logged at most once a minute):
the budget protects the service; it must not take it down with Redis.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from app.api import observability

log = logging.getLogger(__name__)

API_BUDGET = "api"
SOURCE_BUDGET = "source"
# The spec extension that puts an operation on the source budget too.
BUDGET_EXTENSION = "x-rate-limit-budget"
# How long a request may wait on Redis for its budget before it goes through uncounted.
REDIS_TIMEOUT_SECONDS = 0.5
OUTAGE_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class Verdict:
    """One budget after this request: allowed or not, and what the headers say."""

    budget: str
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int      # until the window starts again

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"ratelimit-limit", str(self.limit).encode()),
                (b"ratelimit-remaining", str(self.remaining).encode()),
                (b"ratelimit-reset", str(self.reset_seconds).encode())]


class RateLimited(Exception):
    """A budget is spent: rendered by app/api/errors.py as 429 `rate_limited`."""

    def __init__(self, verdict: Verdict, item: RateLimitItem):
        self.verdict = verdict
        self.retry_after = max(1, verdict.reset_seconds)
        what = ("actions that read the source database" if verdict.budget == SOURCE_BUDGET
                else "requests")
        self.message = (f"this management key made more than {verdict.limit} {what} per "
                        f"{_window(item)}; retry in {self.retry_after} s")
        super().__init__(self.message)


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


def storage_uri(redis_url: str | None) -> str:
    """Where the counters live: this process's memory, or the engine's Redis."""
    if not redis_url:
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+" + redis_url
    return redis_url


class RateLimiter:
    """The budgets of one deployment, keyed by management key id."""

    def __init__(self, budgets: dict[str, str], *, redis_url: str | None = None,
                 namespace: str = "reflexdb"):
        """`budgets`: name -> rate such as "600/minute", or "off" (not counted)."""
        self.items: dict[str, RateLimitItem] = {
            name: parse(rate) for name, rate in budgets.items() if rate != "off"}
        self.shared = bool(redis_url)
        options = ({"socket_timeout": REDIS_TIMEOUT_SECONDS,
                    "socket_connect_timeout": REDIS_TIMEOUT_SECONDS} if redis_url else {})
        self._strategy = FixedWindowRateLimiter(
            storage_from_string(storage_uri(redis_url), wrap_exceptions=True, **options))
        self._namespace = namespace
        self._last_outage_log = -math.inf
        self._lock = threading.Lock()

    def spend(self, key_id: str, budgets: tuple[str, ...], cost: int = 1) -> Verdict | None:
        """Spend `cost` units of each budget (in order, stopping at the first one refused:
        RateLimited); returns the budget with the fewest units left, or None when no budget
        counts or the counters do not answer."""
        verdicts = []
        for name in budgets:
            item = self.items.get(name)
            if item is None:
                continue
            try:
                allowed = self._strategy.hit(item, self._namespace, name, key_id, cost=cost)
                reset_at, remaining = self._strategy.get_window_stats(item, self._namespace, name, key_id)
            except StorageError as exc:
                self._log_outage(exc)
                return None
            verdict = Verdict(name, allowed, item.amount, max(0, remaining),
                              max(0, math.ceil(reset_at - time.time())))
            if not allowed:
                raise RateLimited(verdict, item)
            verdicts.append(verdict)
        return min(verdicts, key=lambda v: v.remaining, default=None)

    async def spend_async(self, key_id: str, budgets: tuple[str, ...]) -> Verdict | None:
        """`spend` without blocking the event loop on Redis."""
        if self.shared:
            return await run_in_threadpool(self.spend, key_id, budgets)
        return self.spend(key_id, budgets)   # memory: microseconds, no I/O

    def _log_outage(self, exc: StorageError) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_outage_log < OUTAGE_LOG_INTERVAL:
                return
            self._last_outage_log = now
        reason = " ".join(str(exc.storage_error).split())[:200] or type(exc.storage_error).__name__
        log.warning("rate limits are not counted: Redis does not answer (%s); requests go through",
                    reason)


def budgets_by_operation(spec: dict) -> dict[str, tuple[str, ...]]:
    """operationId -> the budgets it spends, for every operation that needs a key."""
    default_security = spec.get("security") or []
    budgets = {}
    for item in spec.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "patch", "delete") or "operationId" not in operation:
                continue
            if not operation.get("security", default_security):
                continue
            extra = operation.get(BUDGET_EXTENSION)
            budgets[operation["operationId"]] = (API_BUDGET, extra) if extra else (API_BUDGET,)
    return budgets


class RateLimitMiddleware:
    """After authentication, before validation and the handler: spend the caller's budgets."""

    def __init__(self, app, limiter: RateLimiter, budgets: dict[str, tuple[str, ...]]):
        self.app = app
        self.limiter = limiter
        self.budgets = budgets

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            principal = scope.get("extensions", {}).get("connexion_context", {}).get("user")
            budgets = self.budgets.get(observability.routed_operation_id(scope))
            if principal is not None and budgets:
                try:
                    verdict = await self.limiter.spend_async(principal.key_id, budgets)
                except RateLimited as refused:
                    observability.add_response_headers(refused.verdict.headers())
                    raise
                if verdict is not None:
                    observability.add_response_headers(verdict.headers())
        await self.app(scope, receive, send)


__all__ = ["API_BUDGET", "BUDGET_EXTENSION", "RateLimitMiddleware", "RateLimited", "RateLimiter",
           "SOURCE_BUDGET", "Verdict", "budgets_by_operation", "storage_uri"]
