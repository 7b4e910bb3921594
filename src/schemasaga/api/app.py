"""The FastAPI app factory. Routes are thin: parse, call one service, shape the answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schemasaga import __version__
from schemasaga.api import console, console_forms, demo, ops
from schemasaga.api.access import AccessPolicy, install_access
from schemasaga.api.deps import Services, ServicesDep
from schemasaga.api.docs import install_docs
from schemasaga.api.errors import install_error_handlers, problem_media_types, responses
from schemasaga.api.idempotency import install_idempotency
from schemasaga.api.middleware import RequestContext
from schemasaga.api.models import HealthOut
from schemasaga.api.v1 import databases, events, log, operations, tables, tokens, trash, webhooks


def create_app(services: Services, *, access: AccessPolicy | None = None) -> FastAPI:
    """``access``: tokens, Host allow-list and CORS (by default: no token required, any Host, no CORS).
    ``/healthz``, ``/readyz`` and the OpenAPI document and its pages need no token; ``/metrics`` takes a
    ``read`` token limited to no database whenever tokens are required."""
    app = FastAPI(
        title="schemasaga",
        version=__version__,
        description="Create and change tables in databases you own; metadata kept consistent by sagas.",
        # Served by install_docs, with their scripts from this service rather than a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(demo.router)
    app.include_router(tables.router)
    app.include_router(operations.router)
    app.include_router(databases.router)
    app.include_router(tokens.router)
    app.include_router(log.router)
    app.include_router(trash.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(ops.router)
    console_forms.install(app, console.router)
    install_docs(app, title="schemasaga")
    install_idempotency(app)
    install_access(app, access or AccessPolicy())
    app.add_middleware(RequestContext, routes=lambda: app.routes)

    document = app.openapi

    def openapi() -> dict[str, Any]:
        # Built once by FastAPI and cached in app.openapi_schema; the problem answers moved once.
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_types(document())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"], response_model=HealthOut, responses=responses(503))
    async def healthz(services: ServicesDep) -> HealthOut:
        await services.ping_core()
        return HealthOut(version=__version__)

    return app
