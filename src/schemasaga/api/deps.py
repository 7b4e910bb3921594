"""Every dependency of the routes: the services the composition root built, and per-request metadata.

All ``async def``: FastAPI runs a plain ``def`` dependency in its threadpool, a thread hand-off per
request that cost about a third of the API's CPU under load."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from schemasaga import logcontext
from schemasaga.domain.access import OPEN, Caller, Scope
from schemasaga.domain.errors import NotAuthenticated
from schemasaga.observability.health import Check
from schemasaga.services.databases import DatabaseCommands
from schemasaga.services.drift import DriftDetector
from schemasaga.services.feed import FeedSource
from schemasaga.services.idempotency import IdempotencyStore
from schemasaga.services.ports import Connections
from schemasaga.services.tables import TableCommands
from schemasaga.services.tokens import TokenCommands
from schemasaga.services.trash import TrashCommands
from schemasaga.services.views import ReadModels
from schemasaga.services.waiting import OperationWaits
from schemasaga.services.webhooks import WebhookCommands


@dataclass(frozen=True, slots=True)
class Services:
    """What the web layer calls; built by bootstrap."""

    tables: TableCommands
    trash: TrashCommands
    databases: DatabaseCommands
    drift: DriftDetector
    reads: ReadModels
    connections: Connections
    ping_core: Callable[[], Awaitable[None]]
    readiness: Callable[[], Awaitable[list[Check]]]
    scrape: Callable[[], Awaitable[bytes]]
    tokens: TokenCommands
    idempotency: IdempotencyStore
    waits: OperationWaits
    feed: FeedSource
    webhooks: WebhookCommands


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_tables(request: Request) -> TableCommands:
    return (await get_services(request)).tables


async def get_databases(request: Request) -> DatabaseCommands:
    return (await get_services(request)).databases


async def get_reads(request: Request) -> ReadModels:
    return (await get_services(request)).reads


async def get_token_commands(request: Request) -> TokenCommands:
    return (await get_services(request)).tokens


MAX_HEADER_VALUE = 200
# Where authenticate leaves the request's caller (request.state).
_CALLER = "schemasaga_caller"

# Declares the scheme in the OpenAPI document; the answer to a missing token is ours (401, error shape).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token (`schemasaga tokens create`), required unless the service listens on "
    "loopback only (SCHEMASAGA_AUTH).",
)


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """Who the request acts as: the token of its ``Authorization: Bearer`` header when tokens are
    required (401 without a live one), the open caller otherwise. Run once per request (FastAPI caches
    it), before the body is validated, so that a refused request is told nothing of its body."""
    caller = OPEN
    if request.app.state.tokens_required:
        caller = await token_caller((await get_services(request)).tokens, credentials)
    setattr(request.state, _CALLER, caller)
    return caller


async def token_caller(tokens: TokenCommands, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """Who the ``Authorization: Bearer`` token is, where tokens are required (401 without a live one);
    the worker's metrics endpoint asks it too."""
    if credentials is None:
        raise NotAuthenticated("this needs a token: send `Authorization: Bearer <token>`")
    found = await tokens.authenticate(credentials.credentials)
    if found is None:
        raise NotAuthenticated("the token is unknown or revoked")
    return found


async def authenticated(request: Request) -> Caller:
    """The caller :func:`authenticate` found for this request, or found now (as a dependency would)."""
    caller: Caller | None = getattr(request.state, _CALLER, None)
    if caller is None:
        caller = await authenticate(request, await bearer(request))
    return caller


async def reader(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    caller.require(Scope.READ)
    return caller


async def scraper(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    """``/metrics`` labels figures with every database's name: a read token limited to none."""
    require_scraper(caller)
    return caller


def require_scraper(caller: Caller) -> None:
    caller.require(Scope.READ, every_database=True)


async def writer(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    caller.require(Scope.WRITE)
    return caller


async def admin(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    """Registering databases and managing tokens reach every database: only an admin token limited to
    none may."""
    caller.require(Scope.ADMIN, every_database=True)
    return caller


async def request_metadata(request: Request) -> dict[str, Any]:
    """Who asked, recorded in every event's metadata (never credentials): the token's name when a token
    was used, the client's ``X-Actor`` then only a note beside it.

    The caller is the one the route's token dependency found (every write route has one, before this),
    not a dependency of its own: FastAPI walks a cached dependency's subtree again wherever it is
    declared, on every request."""
    caller = await authenticated(request)
    claimed = request.headers.get("x-actor")
    metadata: dict[str, Any] = {
        # Capped: they are stored in every event of the request.
        # The id the request's log lines and its answer carry (api/middleware.py).
        "request_id": (logcontext.request_id.get() or str(uuid.uuid4()))[:MAX_HEADER_VALUE],
        "actor": (claimed or "anonymous")[:MAX_HEADER_VALUE] if caller.name is None else caller.name,
        "remote_addr": request.client.host if request.client else None,
    }
    if caller.name is not None and claimed is not None:
        metadata["actor_note"] = claimed[:MAX_HEADER_VALUE]
    return metadata


ServicesDep = Annotated[Services, Depends(get_services)]
Tables = Annotated[TableCommands, Depends(get_tables)]
Databases = Annotated[DatabaseCommands, Depends(get_databases)]
Reads = Annotated[ReadModels, Depends(get_reads)]
Metadata = Annotated[dict[str, Any], Depends(request_metadata)]
Tokens = Annotated[TokenCommands, Depends(get_token_commands)]
Reader = Annotated[Caller, Depends(reader)]
Writer = Annotated[Caller, Depends(writer)]
Admin = Annotated[Caller, Depends(admin)]


async def require_table(caller: Caller, reads: ReadModels, table_id: UUID) -> None:
    """A token limited to some databases may touch only their tables; an unknown id is left to the
    route (its 404)."""
    if caller.databases is None:
        return
    view = await reads.get_table(table_id)
    if view is not None:
        caller.require_database(view.database)
