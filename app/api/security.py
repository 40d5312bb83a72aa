"""Bearer authentication with management keys (`x-bearerInfoFunc` of the spec)."""

from __future__ import annotations

import asyncio

from connexion.exceptions import OAuthResponseProblem
from connexion.security import NO_VALUE, BearerSecurityHandler
from starlette.concurrency import run_in_threadpool

from app.domain import management_keys
from app.storage.database import db


async def bearer_info(token: str) -> dict | None:
    """Connexion's token check: None makes it answer 401.

    Connexion calls this on the event loop; the key lookup is database work,
    so it runs on a worker thread with its own connection. A store error raised
    here reaches the error handlers as it is: 503 `unavailable` (app/api/errors.py).
    """
    principal = await run_in_threadpool(_authenticate, token)
    return None if principal is None else {"sub": principal}


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
