"""ASGI middleware guarding what reaches routing: body size and well-formed paths."""

from __future__ import annotations

import re

from connexion.exceptions import ProblemException

# No resource path holds a control character; Connexion's router and Flask's
# disagree on some of them (a newline), which would otherwise end in a 500.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _too_large(max_bytes: int) -> ProblemException:
    return ProblemException(status=413, title="Payload Too Large",
                            detail=f"the request body is larger than {max_bytes // 1024} KiB")


class RequestGuard:
    """413 for bodies over `max_bytes` (Content-Length up front, streamed bytes counted);
    400 for paths with control characters."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if _CONTROL.search(scope.get("path", "")):
            raise ProblemException(status=400, title="Bad Request",
                                   detail="the URL path contains control characters")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                raise _too_large(self.max_bytes)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        return await self.app(scope, limited_receive, send)
