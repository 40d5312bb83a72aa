"""Flask under Connexion's ASGI stack: one hand-off to a request thread and one back.

Connexion runs its Flask app through a2wsgi, which lets the request thread and the event
loop take turns: the thread asks the loop for the body, then hands it the status and
headers, each chunk of the body and the end of it, waiting each time for the loop to take
it (four to five thread ↔ loop round trips per request). The control plane's answers are
small JSON documents (a list page is bounded by pagination.MAX_PAGE_BYTES) and its request
bodies are bounded (RequestGuard, app/api/limits.py, has already refused larger ones), so
here the body is read on the loop, the request runs on a thread of the pool, and its answer
comes back whole, in one hand-off each way (docs/control-plane-performance.md).

The WSGI environ is a2wsgi's (`build_environ`, the ASGI scope included as `asgi.scope`);
the request thread runs in a copy of the loop's context (the request id of the log lines).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import build_environ


class BufferedWSGI:
    """ASGI app serving a WSGI app on a pool of `workers` threads, answers buffered whole."""

    def __init__(self, app, workers: int):
        self.app = app
        self.executor = ThreadPoolExecutor(thread_name_prefix="WSGI", max_workers=workers)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = await _read_body(receive)
        if body is None:
            return   # the client left before its request was whole: nothing runs
        environ = build_environ(scope, io.BytesIO(body))
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(self.executor, context.run, self._call, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _call(self, environ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the WSGI app on this thread: (status, headers, body)."""
        started: list = []

        def start_response(status: str, response_headers, exc_info=None):
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [int(status.split(" ", 1)[0]),
                          [(name.strip().lower().encode("latin1"), value.strip().encode("latin1"))
                           for name, value in response_headers]]
            return chunks.append

        chunks: list[bytes] = []
        iterable = self.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        return started[0], started[1], b"".join(chunks)

    @staticmethod
    async def _lifespan(receive, send):
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        if message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})


async def _read_body(receive) -> bytes | None:
    """The whole request body, or None when the client disconnected before sending it all."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
