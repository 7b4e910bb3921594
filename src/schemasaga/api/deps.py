"""Every dependency of the routes: the services the composition root built, and per-request metadata.

All ``async def``: FastAPI runs a plain ``def`` dependency in its threadpool, a thread hand-off per
request that cost about a third of the API's CPU under load."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from schemasaga import logcontext
from schemasaga.observability.health import Check
from schemasaga.services.databases import DatabaseCommands
from schemasaga.services.drift import DriftDetector
from schemasaga.services.ports import Connections
from schemasaga.services.tables import TableCommands
from schemasaga.services.views import ReadModels


@dataclass(frozen=True, slots=True)
class Services:
    """What the web layer calls; built by bootstrap."""

    tables: TableCommands
    databases: DatabaseCommands
    drift: DriftDetector
    reads: ReadModels
    connections: Connections
    ping_core: Callable[[], Awaitable[None]]
    readiness: Callable[[], Awaitable[list[Check]]]
    scrape: Callable[[], Awaitable[bytes]]


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_tables(request: Request) -> TableCommands:
    return (await get_services(request)).tables


async def get_databases(request: Request) -> DatabaseCommands:
    return (await get_services(request)).databases


async def get_reads(request: Request) -> ReadModels:
    return (await get_services(request)).reads


MAX_HEADER_VALUE = 200


async def request_metadata(request: Request) -> dict[str, Any]:
    """Who asked, recorded in every event's metadata (never credentials)."""
    return {
        # Capped: they are stored in every event of the request.
        # The id the request's log lines and its answer carry (api/middleware.py).
        "request_id": (logcontext.request_id.get() or str(uuid.uuid4()))[:MAX_HEADER_VALUE],
        "actor": request.headers.get("x-actor", "anonymous")[:MAX_HEADER_VALUE],
        "remote_addr": request.client.host if request.client else None,
    }


ServicesDep = Annotated[Services, Depends(get_services)]
Tables = Annotated[TableCommands, Depends(get_tables)]
Databases = Annotated[DatabaseCommands, Depends(get_databases)]
Reads = Annotated[ReadModels, Depends(get_reads)]
Metadata = Annotated[dict[str, Any], Depends(request_metadata)]
