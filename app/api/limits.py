"""ASGI middleware that refuses request bodies over the configured size with 413."""

from __future__ import annotations

from connexion.exceptions import ProblemException


def _too_large(max_bytes: int) -> ProblemException:
    return ProblemException(status=413, title="Payload Too Large",
                            detail=f"the request body is larger than {max_bytes // 1024} KiB")


class BodySizeLimit:
    """Checks Content-Length up front and counts streamed bytes for chunked bodies."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
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
