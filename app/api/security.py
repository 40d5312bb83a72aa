"""Bearer authentication with management keys (`x-bearerInfoFunc` of the spec)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from connexion.exceptions import OAuthResponseProblem
from connexion.security import NO_VALUE, BearerSecurityHandler

from app.domain import management_keys
from app.storage import loop_statements
from app.storage.database import db

# Threads of the key lookups (per worker process): each holds a pooled store connection
# while it looks a key up, so this also bounds how many connections key checks take.
KEY_CHECK_THREADS = 4
_key_checks: ThreadPoolExecutor | None = None
_key_checks_lock = threading.Lock()
NOT_SENT = object()


async def bearer_info(token: str) -> dict | None:
    """Connexion's token check: None makes it answer 401.

    Connexion calls this on the event loop. On PostgreSQL the key lookup is sent from the loop
    itself, on one of the process's asynchronous connections (app/storage/loop_statements.py):
    no thread hand-off. On SQLite, or when all of those connections are busy, it runs on a
    thread of its own pool with a pooled connection (in a copy of the request's context: its
    log lines carry the request id). A store error raised here reaches the error handlers as
    it is: 503 `unavailable` (app/api/errors.py).

    A plain executor, not Starlette's `run_in_threadpool`: anyio's hand-off (a capacity
    limiter, a cancel scope, a condition-variable queue) cost about twice as much CPU per
    request as the executor's (docs/control-plane-performance.md).
    """
    statements = loop_statements.for_store()
    principal = NOT_SENT
    if statements is not None:
        with contextlib.suppress(loop_statements.Busy):
            principal = await management_keys.authenticate_from_loop(token, statements)
    if principal is NOT_SENT:
        context = contextvars.copy_context()
        principal = await asyncio.get_running_loop().run_in_executor(
            _executor(), context.run, _authenticate, token)
    return None if principal is None else {"sub": principal}


def _executor() -> ThreadPoolExecutor:
    global _key_checks
    if _key_checks is None:
        with _key_checks_lock:
            if _key_checks is None:
                _key_checks = ThreadPoolExecutor(KEY_CHECK_THREADS, thread_name_prefix="key-check")
    return _key_checks


def _authenticate(token: str):
    with db.connection_context():
        return management_keys.authenticate(token)


class BearerKeyCheck(BearerSecurityHandler):
    """Connexion's bearer check (`security_map={"bearer": BearerKeyCheck}`), with the token
    function's signature inspected once, when the API is built.

    Connexion's own check inspects it twice per request (does it take `required_scopes`,
    `request`?): a few percent of a request's CPU (docs/control-plane-performance.md).
    The rest is Connexion's `_generic_check` as it is.
    """

    def _generic_check(self, func, exception_msg):
        takes_scopes = self._accepts_kwarg(func, self.required_scopes_kw)
        takes_request = self._accepts_kwarg(func, self.request_kw)

        async def wrapper(request, *args, required_scopes=None):
            kwargs = {}
            if takes_scopes:
                kwargs[self.required_scopes_kw] = required_scopes
            if takes_request:
                kwargs[self.request_kw] = request
            token_info = func(*args, **kwargs)
            while asyncio.iscoroutine(token_info):
                token_info = await token_info
            if token_info is NO_VALUE:
                return NO_VALUE
            if token_info is None:
                raise OAuthResponseProblem(detail=exception_msg)
            return token_info

        return wrapper
