"""What reaches routing (body size, well-formed paths, bodies of known length), and how many
request threads may do heavy work at once."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager

from connexion.exceptions import ProblemException
from flask import current_app

from app.domain.errors import Unavailable

# No resource path holds a control character; Connexion's router and Flask's
# disagree on some of them (a newline), which would otherwise end in a 500.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _too_large(max_bytes: int) -> ProblemException:
    return ProblemException(status=413, title="Payload Too Large",
                            detail=f"the request body is larger than {max_bytes // 1024} KiB")


class RequestGuard:
    """413 for bodies over `max_bytes` (Content-Length up front, streamed bytes counted);
    400 for paths with control characters or a malformed Content-Length.

    A chunked body (no Content-Length) is read here, under the same limit, and handed on
    with its length: Connexion's body validation treats a request without Content-Length
    as having no body.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if _CONTROL.search(scope.get("path", "")):
            raise ProblemException(status=400, title="Bad Request",
                                   detail="the URL path contains control characters")
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                raise ProblemException(status=400, title="Bad Request",
                                       detail="the Content-Length header is not a number")
            if int(length) > self.max_bytes:
                raise _too_large(self.max_bytes)
        elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = await self._read_all(receive)
            scope = {**scope, "headers": [
                (name, value) for name, value in scope["headers"]
                if name not in (b"transfer-encoding", b"content-length")
            ] + [(b"content-length", str(len(body)).encode())]}
            receive = _replay(body, receive)
        return await self.app(scope, self._limited(receive), send)

    async def _read_all(self, receive) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":   # the client went away
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(self.max_bytes)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _limited(self, receive):
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        return limited_receive


def _replay(body: bytes, receive):
    """A receive channel that yields `body` once, then what the client sends next."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class WorkSlots:
    """At most `size` request threads do one kind of heavy work at once.

    A request that finds no free slot is answered 503 at once rather than waiting:
    a waiting request would hold a thread that other accounts' requests need.
    """

    def __init__(self, size: int, what: str):
        self._slots = threading.BoundedSemaphore(size)
        self._what = what

    @contextmanager
    def hold(self):
        if not self._slots.acquire(blocking=False):
            raise Unavailable(f"the server is busy {self._what} for other requests; "
                              f"retry in a moment")
        try:
            yield
        finally:
            self._slots.release()


CONFIG_VALIDATION = "reflexdb.config_validation"


def install_work_slots(flask_app, request_threads: int) -> None:
    """Config validation may use every request thread of a worker but one."""
    flask_app.extensions[CONFIG_VALIDATION] = WorkSlots(
        max(1, request_threads - 1), "validating schema configs")


def config_validation_slot():
    return current_app.extensions[CONFIG_VALIDATION].hold()
