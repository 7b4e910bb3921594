"""The Rails demo's four endpoints, with its exact request and response shapes.

Extra fields (``operation_id``, ``database``, ``engine``) are added next to the demo's ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from schemasaga.api.deps import Metadata, Tables
from schemasaga.api.models import (
    ColumnRequest,
    CreateTableRequest,
    TableIdRequest,
    parse_column,
    parse_table_id,
)

router = APIRouter(prefix="/table", tags=["demo"])


@router.post("/create")
async def create(body: CreateTableRequest, tables: Tables, meta: Metadata) -> dict[str, Any]:
    accepted = await tables.create_table(name=body.name, database=body.database, metadata=meta)
    return {
        "status": "ok",
        "table": {"table_id": str(accepted.table_id)},
        "operation_id": str(accepted.operation_id),
    }


@router.post("/delete")
async def delete(body: TableIdRequest, tables: Tables, meta: Metadata) -> dict[str, Any]:
    accepted = await tables.delete_table(table_id=parse_table_id(body.table_id), metadata=meta)
    return {"status": "ok", "operation_id": str(accepted.operation_id)}


@router.post("/show")
async def show(body: TableIdRequest, tables: Tables) -> dict[str, Any]:
    row = await tables.show(parse_table_id(body.table_id))
    return {"table": table_view(row, engine=tables.catalog_engine(row["database_name"]))}


@router.post("/column")
async def column(body: ColumnRequest, tables: Tables, meta: Metadata) -> dict[str, Any]:
    table_id = parse_table_id(body.table_id)
    if body.column.type is None:
        accepted = await tables.remove_column(table_id=table_id, name=body.column.name, metadata=meta)
    else:
        accepted = await tables.add_column(table_id=table_id, column=parse_column(body.column), metadata=meta)
    return {"status": "ok", "operation_id": str(accepted.operation_id)}


def table_view(row: dict[str, Any], *, engine: str | None) -> dict[str, Any]:
    """The demo's table shape (plus database and engine)."""
    return {
        "table_id": str(row["table_id"]),
        "name": row["name"],
        "synced": row["synced"],
        "exists": row["exists_"],
        "columns": row["columns"],
        "database": row["database_name"],
        "engine": engine,
    }
