"""BufferedWSGI: the Flask app behind Connexion's stack, one hand-off each way."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from app.api.wsgi_bridge import BufferedWSGI

REQUEST_ID = contextvars.ContextVar("request_id", default=None)
SCOPE = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/echo",
         "raw_path": b"/v1/echo", "root_path": "", "scheme": "http", "query_string": b"a=1",
         "headers": [(b"content-type", b"application/json")],
         "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}


def _drive(app, messages):
    """Run one ASGI request whose client sends `messages`; what the app sent back."""
    sent, incoming = [], list(messages)

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def main():
        REQUEST_ID.set("rid-1")
        await app(SCOPE, receive, send)

    asyncio.run(main())
    return sent


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Request-Id", REQUEST_ID.get())])
    return [environ["PATH_INFO"].encode(), b"?", environ["QUERY_STRING"].encode(), b" ", body]


class TestBufferedWSGI:
    def test_a_body_in_chunks_is_one_request_and_the_answer_comes_back_whole(self):
        sent = _drive(BufferedWSGI(echo, workers=1), [
            {"type": "http.request", "body": b'{"name":', "more_body": True},
            {"type": "http.request", "body": b'"shop"}', "more_body": False}])

        assert sent == [
            {"type": "http.response.start", "status": 201,
             "headers": [(b"content-type", b"text/plain"), (b"x-request-id", b"rid-1")]},
            {"type": "http.response.body", "body": b'/v1/echo?a=1 {"name":"shop"}'}]

    def test_a_client_gone_before_its_body_is_whole_runs_nothing(self):
        calls = []

        def app(environ, start_response):
            calls.append(environ)
            return echo(environ, start_response)

        sent = _drive(BufferedWSGI(app, workers=1),
                      [{"type": "http.request", "body": b'{"na', "more_body": True}])

        assert (calls, sent) == ([], [])

    def test_an_exception_reaches_the_middleware_above_and_the_iterable_is_closed(self):
        closed = []

        class Failing:
            def __iter__(self):
                raise RuntimeError("boom")

            def close(self):
                closed.append(True)

        def app(environ, start_response):
            start_response("200 OK", [])
            return Failing()

        with pytest.raises(RuntimeError, match="boom"):
            _drive(BufferedWSGI(app, workers=1), [{"type": "http.request", "body": b""}])
        assert closed == [True]
