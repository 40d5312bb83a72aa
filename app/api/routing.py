"""Connexion's routing middleware with one route per path and no slash redirects.

Connexion adds one Starlette route per operation, so a wrong method on a path answers 405
listing only the methods of the first operation it tried (`Allow: GET, HEAD` where the path
also takes POST), and Starlette redirects `/connections/` to an absolute `http://` URL.
Here each path is one route that knows all its operations, and a trailing slash is simply
an unknown path (404).

`_add_operation_internal` is not Connexion's public API: setup.cfg pins connexion to the
minor version tests/api/test_robustness.py (TestRoutingDetails) passes on.
"""

from __future__ import annotations

from connexion.middleware.routing import RoutingAPI, RoutingMiddleware
from starlette.exceptions import HTTPException


class PathOperations:
    """The ASGI app of one path: dispatches to the operation of the request's method."""

    def __init__(self):
        self.operations: dict = {}

    @property
    def allowed(self) -> str:
        methods = set(self.operations) | ({"HEAD"} if "GET" in self.operations else set())
        return ", ".join(sorted(methods))

    async def __call__(self, scope, receive, send):
        method = scope["method"]
        operation = self.operations.get("GET" if method == "HEAD" else method)
        if operation is None:
            raise HTTPException(status_code=405, headers={"Allow": self.allowed})
        await operation(scope, receive, send)


class PathRoutingAPI(RoutingAPI):
    def __init__(self, *args, **kwargs):
        self._paths: dict[str, PathOperations] = {}
        super().__init__(*args, **kwargs)
        self.router.redirect_slashes = False

    def _add_operation_internal(self, method, path, operation, name=None):
        if path not in self._paths:
            self._paths[path] = PathOperations()
            self.router.add_route(path, self._paths[path])   # every method: PathOperations decides
        self._paths[path].operations[method.upper()] = operation


class PathRoutingMiddleware(RoutingMiddleware):
    """Drop-in for Connexion's RoutingMiddleware (one API per base path)."""

    def __init__(self, app):
        super().__init__(app)
        self.router.redirect_slashes = False

    def add_api(self, specification, base_path=None, arguments=None, **kwargs) -> None:
        api = PathRoutingAPI(specification, base_path=base_path, arguments=arguments,
                             next_app=self.app, **kwargs)
        self.router.mount(api.base_path, app=api.router)
