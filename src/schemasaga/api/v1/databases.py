"""Registered databases: register (after trying the connection), list, show, check, unregister, drift.

No answer ever holds a database URL or its password: only its non-secret parts (engine, driver, host,
port, database or SQLite file, username)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from schemasaga.api.deps import Admin, Databases, Metadata, Reader, ServicesDep, Writer
from schemasaga.api.errors import problems
from schemasaga.api.idempotency import IDEMPOTENT
from schemasaga.api.models import (
    CheckOut,
    DatabaseList,
    DatabaseOut,
    DriftReportOut,
    OkOut,
    RegisterDatabaseRequest,
)

router = APIRouter(prefix="/v1/databases", tags=["databases"], responses=problems(401, 403))


@router.post(
    "",
    status_code=201,
    response_model=DatabaseOut,
    responses=problems(400, 403, 409, 422, 503),
    dependencies=IDEMPOTENT,
)
async def register_database(
    body: RegisterDatabaseRequest, _: Admin, databases: Databases, meta: Metadata, response: Response
) -> DatabaseOut:
    database = await databases.register(name=body.name, url=body.url, metadata=meta)
    response.headers["Location"] = f"/v1/databases/{database.name}"
    return DatabaseOut.model_validate(database)


@router.get("", response_model=DatabaseList, responses=problems(503))
async def list_databases(caller: Reader, databases: Databases) -> DatabaseList:
    """Those the token may touch."""
    visible = [d for d in await databases.list_databases() if caller.may_use(d.name)]
    return DatabaseList(items=[DatabaseOut.model_validate(d) for d in visible])


@router.get("/{name}", response_model=DatabaseOut, responses=problems(400, 404, 422, 503))
async def get_database(name: str, caller: Reader, databases: Databases) -> DatabaseOut:
    caller.require_database(name)
    return DatabaseOut.model_validate(await databases.get(name))


@router.post(
    "/{name}/check",
    response_model=CheckOut,
    responses=problems(400, 404, 409, 422, 503),
    dependencies=IDEMPOTENT,
)
async def check_database(name: str, caller: Writer, databases: Databases, meta: Metadata) -> CheckOut:
    """Try the connection now (a change of its status is recorded): a write."""
    caller.require_database(name)
    return CheckOut.model_validate(await databases.check(name=name, metadata=meta))


@router.delete(
    "/{name}", response_model=OkOut, responses=problems(400, 404, 409, 422, 503), dependencies=IDEMPOTENT
)
async def unregister_database(name: str, _: Admin, databases: Databases, meta: Metadata) -> OkOut:
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
