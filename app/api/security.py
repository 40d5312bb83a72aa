"""Bearer authentication with management keys (`x-bearerInfoFunc` of the spec)."""

from __future__ import annotations

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
