"""Routes for operating the service: readiness (``/readyz``) and metrics (``/metrics``). The cheap
liveness check, ``/healthz``, is the app's own."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from schemasaga.api.deps import ServicesDep, scraper
from schemasaga.domain.access import Caller
from schemasaga.observability.metrics import CONTENT_TYPE_LATEST

router = APIRouter()


class CheckOut(BaseModel):
    ok: bool
    detail: str | None = None


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, CheckOut]


# Both are for probes and scrapers, outside the JSON API's contract: not in the OpenAPI document.
@router.get("/readyz", include_in_schema=False)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to serve: the core database answers, its schema is the one this version expects, and (for
    ``serve`` with its worker) the worker's heartbeat is fresh. 503 (a :class:`ReadyOut` all the same)
    names the failed checks."""
    checks = await services.readiness()
    ready = all(c.ok for c in checks)
    body = ReadyOut(
        status="ready" if ready else "not_ready",
        checks={c.name: CheckOut(ok=c.ok, detail=c.detail) for c in checks},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep, _: Annotated[Caller, Depends(scraper)]) -> Response:
    """Prometheus text format. Whenever tokens are required, it takes one like the rest: a ``read`` token
    limited to no database, for its labels name every database (``/readyz`` stays open to probes)."""
    return Response(await services.scrape(), media_type=CONTENT_TYPE_LATEST)
