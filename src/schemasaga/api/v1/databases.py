"""Registered databases: register (after trying the connection), list, show, check, unregister.

No answer ever holds a database URL or its password: only its non-secret parts (engine, driver, host,
port, database or SQLite file, username)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from schemasaga.api.deps import Metadata
from schemasaga.api.models import Strict
from schemasaga.databases.service import DatabaseService

router = APIRouter(prefix="/v1/databases", tags=["databases"])


async def get_databases(request: Request) -> DatabaseService:
    service: DatabaseService = request.app.state.container.databases
    return service


Databases = Annotated[DatabaseService, Depends(get_databases)]


class RegisterDatabaseRequest(Strict):
    name: str
    url: str

    def __repr__(self) -> str:  # never the URL
        return f"RegisterDatabaseRequest(name={self.name!r})"

    __str__ = __repr__


@router.post("", status_code=201)
async def register_database(
    body: RegisterDatabaseRequest, databases: Databases, meta: Metadata, response: Response
) -> dict[str, Any]:
    database = await databases.register(name=body.name, url=body.url, metadata=meta)
    response.headers["Location"] = f"/v1/databases/{database['name']}"
    return database


@router.get("")
async def list_databases(databases: Databases) -> dict[str, Any]:
    return {"items": await databases.list_databases()}


@router.get("/{name}")
async def get_database(name: str, databases: Databases) -> dict[str, Any]:
    return await databases.get(name)


@router.post("/{name}/check")
async def check_database(name: str, databases: Databases, meta: Metadata) -> dict[str, Any]:
    return await databases.check(name=name, metadata=meta)


@router.delete("/{name}")
async def unregister_database(name: str, databases: Databases, meta: Metadata) -> dict[str, Any]:
    await databases.unregister(name=name, metadata=meta)
    return {"status": "ok"}
