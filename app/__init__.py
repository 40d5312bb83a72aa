"""ReflexDB-compatible control plane. `create_app()` builds the Connexion (ASGI) app."""

from __future__ import annotations

import warnings


def create_app(settings=None):
    """The control plane as an ASGI app: serve it with an ASGI worker (see gunicorn.conf.py)."""
    # Imported here so the CLI and the instance runtime don't pay for Connexion.
    # Starlette warns about its test client's httpx at import; we don't use it in production.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import datetime as dt
    import json
    from urllib.parse import urlparse

    import connexion
    import yaml
    from connexion.jsonifier import Jsonifier
    from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
    from connexion.middleware.request_validation import RequestValidationMiddleware
    from connexion.middleware.routing import RoutingMiddleware
    from connexion.middleware.swagger_ui import SwaggerUIMiddleware

    from app.api.audit import AuditTrail
    from app.api.errors import register_error_handlers
    from app.api.limits import RequestGuard, install_work_slots
    from app.api.mutations import MutationResolver
    from app.api.observability import (
        ApiMetrics,
        MetricsEndpoint,
        RequestObservability,
        metrics_registry,
        spec_operations,
    )
    from app.api.ratelimit import API_BUDGET, SOURCE_BUDGET, RateLimiter, RateLimitMiddleware, budgets_by_operation
    from app.api.reference import ExplorerMiddleware, SpecDocuments
    from app.api.routing import PathRoutingMiddleware
    from app.api.security import BearerKeyCheck
    from app.api.validation import PreparedValidationMiddleware, quiet_media_types_notice, validator_map
    from app.api.wsgi_bridge import BufferedWSGI
    from app.bootstrap import configure_services
    from app.config import Settings
    from app.domain.lifecycle import STABLE, TRANSITIONAL
    from app.logs import configure_logging
    from app.storage.database import db

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    quiet_media_types_notice()
    configure_services(settings)
    spec = yaml.safe_load(settings.spec_path.read_bytes())
    base_path = urlparse((spec.get("servers") or [{}])[0].get("url", "")).path.rstrip("/")

    # Compact JSON in the schemas' field order (Connexion's default indents); routing with
    # one route per path (full `Allow` on 405, no slash redirects: app/api/routing.py).
    middlewares = [PathRoutingMiddleware if middleware is RoutingMiddleware else middleware
                   for middleware in ConnexionMiddleware.default_middlewares]
    app = connexion.FlaskApp(__name__, jsonifier=Jsonifier(json, separators=(",", ":")),
                             middlewares=middlewares)
    app.add_api(
        settings.spec_path,
        # Every mutating operation gets idempotency (POST) and its audit entry (app/api/mutations.py).
        resolver=MutationResolver("app.api.handlers",
                                  idempotency_ttl=dt.timedelta(seconds=settings.idempotency_ttl_seconds)),
        pythonic_params=True,
        strict_validation=True,
        validator_map=validator_map(),
        validate_responses=settings.validate_responses,
        # The bearer check without a signature inspection per request (app/api/security.py).
        security_map={"bearer": BearerKeyCheck},
    )
    register_error_handlers(app)
    # Outermost: every answer, errors included, gets its request id, log line and metrics
    # (app/api/observability.py).
    api_metrics = ApiMetrics()
    app.add_middleware(RequestObservability, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       operations=spec_operations(spec, base_path), api_metrics=api_metrics)
    app.add_middleware(RequestGuard, position=MiddlewarePosition.BEFORE_SWAGGER,
                       max_bytes=settings.max_body_bytes)
    app.add_middleware(SpecDocuments, position=MiddlewarePosition.BEFORE_SWAGGER, spec_path=settings.spec_path)
    app.add_middleware(MetricsEndpoint, position=MiddlewarePosition.BEFORE_SWAGGER,
                       registry=metrics_registry(api_metrics, STABLE + TRANSITIONAL))
    # After authentication (the key is known), before validation and the handler.
    limiter = RateLimiter({API_BUDGET: settings.rate_limit, SOURCE_BUDGET: settings.source_rate_limit},
                          redis_url=settings.redis_url, namespace=settings.queue_name)
    app.add_middleware(RateLimitMiddleware, position=MiddlewarePosition.BEFORE_VALIDATION,
                       limiter=limiter, budgets=budgets_by_operation(spec))
    app.add_middleware(AuditTrail, position=MiddlewarePosition.BEFORE_VALIDATION)
    # Swagger UI's middleware only for requests that may be for the explorer (app/api/reference.py)
    # and request validation that prepares each operation once (app/api/validation.py), swapped
    # in after the calls above: they place theirs by Connexion's classes. The stack is built at
    # the first request.
    stack = app.middleware.middlewares
    stack[stack.index(SwaggerUIMiddleware)] = ExplorerMiddleware
    stack[stack.index(RequestValidationMiddleware)] = PreparedValidationMiddleware

    # At most one store connection per request, returned to the pool when the request ends.
    flask_app = app.app
    # Connexion runs Flask on an a2wsgi pool of 10 threads and offers no setting
    # for it; threads fighting over the GIL cost throughput, so size it by
    # measurement (scripts/bench_api.py, docs/benchmarks.md). a2wsgi's thread and
    # loop take turns several times per request; BufferedWSGI hands a request over
    # once and its answer back once (app/api/wsgi_bridge.py). `_middleware_app` is
    # private: setup.cfg pins connexion to the minor version tests/test_cli.py
    # (test_thread_pool_size_is_applied) passes on.
    app._middleware_app.asgi_app = BufferedWSGI(flask_app.wsgi_app, workers=settings.threads)
    install_work_slots(flask_app, settings.threads)

    # A request takes a store connection from the pool at its first query (peewee connects
    # on demand), so requests that need none (an unknown path) never wait on the store.
    @flask_app.teardown_request
    def _close_db(_exc):
        if not db.is_closed():
            db.close()

    @flask_app.after_request
    def _no_content_type_without_content(response):
        # Connexion labels every answer with the operation's media type, a 204 included.
        if response.status_code == 204:
            response.headers.pop("Content-Type", None)
        return response

    return app
