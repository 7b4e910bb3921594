"""Dependencies: the services built by bootstrap, and per-request event metadata.

All ``async def``: FastAPI runs a plain ``def`` dependency in its threadpool, a thread hand-off per
request that cost about a third of the API's CPU under load."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Request

from schemasaga.services import TableService


async def get_tables(request: Request) -> TableService:
    service: TableService = request.app.state.container.tables
    return service


MAX_HEADER_VALUE = 200


async def request_metadata(request: Request) -> dict[str, Any]:
    """Who asked, recorded in every event's metadata (never credentials)."""
    return {
        # Capped: they are stored in every event of the request.
        "request_id": (request.headers.get("x-request-id") or str(uuid.uuid4()))[:MAX_HEADER_VALUE],
        "actor": request.headers.get("x-actor", "anonymous")[:MAX_HEADER_VALUE],
        "remote_addr": request.client.host if request.client else None,
    }


Tables = Annotated[TableService, Depends(get_tables)]
Metadata = Annotated[dict[str, Any], Depends(request_metadata)]
