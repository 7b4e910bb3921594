"""Registered databases: register (after trying the connection), list, show, check, unregister, drift.

No answer ever holds a database URL or its password: only its non-secret parts (engine, driver, host,
port, database or SQLite file, username)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from schemasaga.api.deps import Databases, Metadata, Reader, ServicesDep
from schemasaga.api.errors import problems
from schemasaga.api.idempotency import IdempotentAdmin, IdempotentWriter
from schemasaga.api.models import (
    CheckOut,
    DatabaseList,
    DatabaseOut,
    DriftReportOut,
    OkOut,
    RegisterDatabaseRequest,
)
from schemasaga.api.paging import Limit, link_next, next_after

router = APIRouter(prefix="/v1/databases", tags=["databases"], responses=problems(401, 403))


@router.post(
    "",
    status_code=201,
    response_model=DatabaseOut,
    responses=problems(400, 403, 409, 422, 503),
)
async def register_database(
    body: RegisterDatabaseRequest,
    _: IdempotentAdmin,
    databases: Databases,
    meta: Metadata,
    response: Response,
) -> DatabaseOut:
    database = await databases.register(name=body.name, url=body.url, metadata=meta)
    response.headers["Location"] = f"/v1/databases/{database.name}"
    return DatabaseOut.model_validate(database)


@router.get("", response_model=DatabaseList, responses=problems(400, 422, 503))
async def list_databases(
    caller: Reader,
    databases: Databases,
    request: Request,
    response: Response,
    after: Annotated[str | None, Query(description="keyset cursor: the last name of the previous page")] = (
        None
    ),
    limit: Limit = 100,
) -> DatabaseList:
    """Those the token may touch, by name, a page at a time (`next_after`, and the `Link` header)."""
    visible = await databases.list_databases(after=after, limit=limit, only=caller.databases)
    after_next = next_after(len(visible), limit, visible[-1].name if visible else None)
    link_next(request, response, after_next)
    return DatabaseList(items=[DatabaseOut.model_validate(d) for d in visible], next_after=after_next)


@router.get("/{name}", response_model=DatabaseOut, responses=problems(400, 404, 422, 503))
async def get_database(name: str, caller: Reader, databases: Databases) -> DatabaseOut:
    caller.require_database(name)
    return DatabaseOut.model_validate(await databases.get(name))


@router.post(
    "/{name}/check",
    response_model=CheckOut,
    responses=problems(400, 404, 409, 422, 503),
)
async def check_database(
    name: str, caller: IdempotentWriter, databases: Databases, meta: Metadata
) -> CheckOut:
    """Try the connection now (a change of its status is recorded): a write."""
    caller.require_database(name)
    return CheckOut.model_validate(await databases.check(name=name, metadata=meta))


@router.delete("/{name}", response_model=OkOut, responses=problems(400, 404, 409, 422, 503))
async def unregister_database(name: str, _: IdempotentAdmin, databases: Databases, meta: Metadata) -> OkOut:
    """Forget a registered database. 409 while it holds a live table or anything in the trash (forgotten,
    the trash could neither restore nor purge it): delete the tables, restore or purge the trash first."""
    await databases.unregister(name=name, metadata=meta)
    return OkOut()


@router.get(
    "/{name}/drift",
    response_model=DriftReportOut,
    response_model_exclude_none=True,
    responses=problems(404, 422, 503),
)
async def database_drift(name: str, caller: Reader, services: ServicesDep) -> DriftReportOut:
    """Compare every settled table's confirmed metadata with the live schema of database ``name``."""
    caller.require_database(name)
    return DriftReportOut.of(await services.drift.scan(name))
