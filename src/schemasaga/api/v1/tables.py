from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from schemasaga.api.demo import table_view
from schemasaga.api.deps import Metadata, Tables
from schemasaga.api.models import AddColumnRequest, ColumnSpec, CreateTableRequest, parse_column
from schemasaga.services import Accepted

router = APIRouter(prefix="/v1/tables", tags=["tables"])


def _accepted(accepted: Accepted, response: Response) -> dict[str, Any]:
    response.status_code = 202
    url = f"/v1/operations/{accepted.operation_id}"
    response.headers["Location"] = url
    return {
        "status": "accepted",
        "table_id": str(accepted.table_id),
        "operation_id": str(accepted.operation_id),
        "operation_url": url,
    }


@router.post("", status_code=202)
async def create_table(
    body: CreateTableRequest, tables: Tables, meta: Metadata, response: Response
) -> dict[str, Any]:
    accepted = await tables.create_table(name=body.name, database=body.database, metadata=meta)
    return _accepted(accepted, response)


@router.get("")
async def list_tables(
    tables: Tables,
    database: str | None = None,
    include_deleted: bool = False,
    after: Annotated[
        UUID | None, Query(description="keyset cursor: last table_id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = await tables.list_tables(
        database=database, include_deleted=include_deleted, after=after, limit=limit
    )
    items = [table_view(r, engine=tables.catalog_engine(r["database_name"])) for r in rows]
    return {"items": items, "next_after": items[-1]["table_id"] if len(items) == limit else None}


@router.get("/{table_id}")
async def get_table(
    table_id: UUID,
    tables: Tables,
    at_version: Annotated[int | None, Query(ge=0, description="the table as it was at this version")] = None,
    at: Annotated[
        datetime | None,
        Query(description="the table as it was at this moment (ISO 8601), whole transactions only"),
    ] = None,
) -> dict[str, Any]:
    if at_version is None and at is None:
        row = await tables.show(table_id)
        return table_view(row, engine=tables.catalog_engine(row["database_name"]))
    table = await tables.history(table_id, at_version=at_version, at_time=at)
    return {
        "table_id": str(table.table_id),
        "name": table.name,
        "synced": table.synced,
        "exists": table.exists,
        "columns": {name: c.to_dict() for name, c in table.columns.items()},
        "database": table.database,
        "version": table.version,
    }


@router.delete("/{table_id}", status_code=202)
async def delete_table(table_id: UUID, tables: Tables, meta: Metadata, response: Response) -> dict[str, Any]:
    return _accepted(await tables.delete_table(table_id=table_id, metadata=meta), response)


@router.post("/{table_id}/columns", status_code=202)
async def add_column(
    table_id: UUID, body: AddColumnRequest, tables: Tables, meta: Metadata, response: Response
) -> dict[str, Any]:
    column = parse_column(ColumnSpec(name=body.name, type=body.type, nullable=body.nullable))
    return _accepted(await tables.add_column(table_id=table_id, column=column, metadata=meta), response)


@router.delete("/{table_id}/columns/{name}", status_code=202)
async def remove_column(
    table_id: UUID, name: str, tables: Tables, meta: Metadata, response: Response
) -> dict[str, Any]:
    return _accepted(await tables.remove_column(table_id=table_id, name=name, metadata=meta), response)


@router.get("/{table_id}/events")
async def table_events(table_id: UUID, tables: Tables) -> list[dict[str, Any]]:
    return await tables.events_of(table_id)
