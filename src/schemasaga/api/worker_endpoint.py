"""What ``schemasaga worker --metrics-listen`` answers: ``/metrics`` (with the token ``serve``'s takes),
``/healthz`` and ``/readyz`` (open to probes, as ``serve``'s), and a 4xx in the API's error shape for
anything else. A plain ASGI app: three routes do not need FastAPI's routing or its OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from schemasaga import __version__
from schemasaga.api.access import HostAllowList
from schemasaga.api.deps import bearer, require_scraper, token_caller
from schemasaga.api.errors import core_unavailable_response, error_response, status_of
from schemasaga.api.models import HealthOut
from schemasaga.api.ops import CheckOut, ReadyOut
from schemasaga.domain.errors import DomainError, NotAuthenticated
from schemasaga.observability.health import Check
from schemasaga.observability.metrics import CONTENT_TYPE_LATEST
from schemasaga.services.tokens import TokenCommands

log = logging.getLogger(__name__)

PATHS = ("/metrics", "/healthz", "/readyz")
# /healthz waits this long for the core database, at most: a probe must answer.
_PING_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class WorkerProbes:
    """What the endpoint calls; built by bootstrap's container."""

    scrape: Callable[[], Awaitable[bytes]]
    readiness: Callable[[], Awaitable[list[Check]]]
    ping_core: Callable[[], Awaitable[None]]
    tokens: TokenCommands


class WorkerEndpoint:
    def __init__(self, probes: WorkerProbes, *, tokens_required: bool) -> None:
        self.probes = probes
        self.tokens_required = tokens_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan, no websocket
            return
        response = await self._answer(Request(scope, receive))
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        if path not in PATHS:
            return error_response(404, "not_found", f"this worker serves {', '.join(PATHS)} only", path=path)
        if request.method not in ("GET", "HEAD"):
            return error_response(
                405,
                "method_not_allowed",
                f"{path} answers GET (and HEAD) only",
                headers={"Allow": "GET, HEAD"},
                path=path,
            )
        try:
            if path == "/metrics":
                return await self._metrics(request)
            if path == "/healthz":
                async with asyncio.timeout(_PING_TIMEOUT):
                    await self.probes.ping_core()
                return JSONResponse(HealthOut(version=__version__).model_dump())
            return await self._ready()
        except DomainError as exc:  # a refused token
            headers = (
                {"WWW-Authenticate": 'Bearer realm="schemasaga"'}
                if isinstance(exc, NotAuthenticated)
                else None
            )
            return error_response(status_of(exc), exc.code, exc.message, headers=headers, path=path)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError) as exc:
            return core_unavailable_response(request, exc)

    async def _metrics(self, request: Request) -> Response:
        """As ``serve``'s ``/metrics``: whenever tokens are required, a ``read`` token limited to no
        database (its labels name every database)."""
        if self.tokens_required:
            require_scraper(await token_caller(self.probes.tokens, await bearer(request)))
        return Response(await self.probes.scrape(), media_type=CONTENT_TYPE_LATEST)

    async def _ready(self) -> Response:
        checks = await self.probes.readiness()
        ready = all(c.ok for c in checks)
        body = ReadyOut(
            status="ready" if ready else "not_ready",
            checks={c.name: CheckOut(ok=c.ok, detail=c.detail) for c in checks},
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def create_worker_endpoint(
    probes: WorkerProbes, *, tokens_required: bool, allowed_hosts: frozenset[str] | None
) -> ASGIApp:
    """The endpoint behind the same ``Host`` allow-list as the API (see ``api/access.py``)."""
    app: ASGIApp = WorkerEndpoint(probes, tokens_required=tokens_required)
    if allowed_hosts is not None:
        app = HostAllowList(app, allowed=allowed_hosts)
    return app
