"""The FastAPI app factory. Routes are thin; the container built by bootstrap holds the services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from schemasaga import __version__
from schemasaga.api import demo
from schemasaga.api.errors import install_error_handlers
from schemasaga.api.v1 import databases, drift, operations, tables

if TYPE_CHECKING:
    from schemasaga.bootstrap import Container


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="schemasaga",
        version=__version__,
        description="Create and change tables in databases you own; metadata kept consistent by sagas.",
    )
    app.state.container = container
    install_error_handlers(app)
    app.include_router(demo.router)
    app.include_router(tables.router)
    app.include_router(operations.router)
    app.include_router(databases.router)
    app.include_router(drift.router)

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> dict[str, Any]:
        c: Container = request.app.state.container
        async with c.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return {"status": "ok", "version": __version__}

    return app
