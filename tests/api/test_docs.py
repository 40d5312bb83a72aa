"""The spec and an API explorer are served, without a key."""

from __future__ import annotations

import yaml

from app.config import DEFAULT_SPEC


def test_spec_is_served_as_json(client):
    response = client.get("/openapi.json", key=None)
    assert response.status_code == 200
    assert response.json()["paths"].keys() == yaml.safe_load(DEFAULT_SPEC.read_text())["paths"].keys()


def test_swagger_ui_is_served(client):
    response = client.get("/ui/", key=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


class TestExplorerMiddleware:
    """Swagger UI's middleware routes only requests that may be for its pages; the rest go
    straight on, as its router's default would send them (app/api/reference.py)."""

    def _middleware(self):
        import asyncio

        from connexion.spec import Specification

        from app.api.reference import ExplorerMiddleware

        passed = []

        async def next_app(scope, receive, send):
            passed.append(scope["path"])
            await send({"type": "http.response.start", "status": 299, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        middleware = ExplorerMiddleware(next_app)
        middleware.add_api(Specification.load(DEFAULT_SPEC), base_path="/v1")

        def call(path):
            sent = []

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message):
                sent.append(message)

            scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "",
                     "query_string": b"", "headers": [], "scheme": "http", "server": ("t", 80)}
            asyncio.run(middleware(scope, receive, send))
            return sent[0]["status"]

        return middleware, call, passed

    def test_only_paths_that_may_be_its_own_enter_its_router(self):
        middleware, call, _ = self._middleware()
        router, routed = middleware.router, []

        async def spy(scope, receive, send):
            routed.append(scope["path"])
            await router(scope, receive, send)

        middleware.router = spy
        for path in ("/v1/connections/x", "/v1/databases", "/v1/ui/", "/v1/openapi.json", "/v1/ui"):
            call(path)
        assert routed == ["/v1/ui/", "/v1/openapi.json", "/v1/ui"]

    def test_api_paths_go_straight_on_and_its_own_are_served(self):
        _, call, passed = self._middleware()
        assert call("/v1/connections/x") == 299
        assert call("/v1/ui/") == 200                  # Swagger UI's page, from its router
        assert call("/v1/uid-lookalike") == 299        # a marker's prefix: the router, then on
        assert passed == ["/v1/connections/x", "/v1/uid-lookalike"]
