from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from schemasaga.api.deps import Metadata, Reads, ServicesDep, Tables
from schemasaga.api.errors import responses
from schemasaga.api.models import (
    AcceptedOut,
    AddColumnRequest,
    CreateTableRequest,
    EventOut,
    ReconcileRequest,
    TableOut,
    TablePage,
    parse_column,
)
from schemasaga.domain.errors import TableNotFound
from schemasaga.services.tables import Accepted

router = APIRouter(prefix="/v1/tables", tags=["tables"])

CHANGE_ERRORS = responses(400, 404, 409, 422, 503)


def _accepted(accepted: Accepted, response: Response) -> AcceptedOut:
    out = AcceptedOut.of(accepted)
    response.headers["Location"] = out.operation_url
    return out


@router.post("", status_code=202, response_model=AcceptedOut, responses=CHANGE_ERRORS)
async def create_table(
    body: CreateTableRequest, tables: Tables, meta: Metadata, response: Response
) -> AcceptedOut:
    accepted = await tables.create_table(name=body.name, database=body.database, metadata=meta)
    return _accepted(accepted, response)


@router.get("", response_model=TablePage, responses=responses(400, 422, 503))
async def list_tables(
    reads: Reads,
    services: ServicesDep,
    database: str | None = None,
    include_deleted: bool = False,
    after: Annotated[
        UUID | None, Query(description="keyset cursor: last table_id of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TablePage:
    views = await reads.list_tables(
        database=database, include_deleted=include_deleted, after=after, limit=limit
    )
    items = [TableOut.of(v, engine=services.connections.known_engine(v.database)) for v in views]
    return TablePage(items=items, next_after=items[-1].table_id if len(items) == limit else None)


@router.get("/{table_id}", response_model=TableOut, responses=responses(404, 422, 503))
async def get_table(
    table_id: UUID,
    reads: Reads,
    services: ServicesDep,
    at_version: Annotated[int | None, Query(ge=0, description="the table as it was at this version")] = None,
    at: Annotated[
        datetime | None,
        Query(description="the table as it was at this moment (ISO 8601), whole transactions only"),
    ] = None,
) -> TableOut:
    if at_version is None and at is None:
        view = await reads.get_table(table_id)
        if view is None:
            raise TableNotFound(f"no table with id {table_id}")
        return TableOut.of(view, engine=services.connections.known_engine(view.database))
    table = await reads.table_at(table_id, version=at_version, moment=at)
    return TableOut.at(table, engine=services.connections.known_engine(table.database))


@router.delete("/{table_id}", status_code=202, response_model=AcceptedOut, responses=CHANGE_ERRORS)
async def delete_table(table_id: UUID, tables: Tables, meta: Metadata, response: Response) -> AcceptedOut:
    return _accepted(await tables.delete_table(table_id=table_id, metadata=meta), response)


@router.post("/{table_id}/columns", status_code=202, response_model=AcceptedOut, responses=CHANGE_ERRORS)
async def add_column(
    table_id: UUID, body: AddColumnRequest, tables: Tables, meta: Metadata, response: Response
) -> AcceptedOut:
    column = parse_column(body.name, body.type, nullable=body.nullable)
    return _accepted(await tables.add_column(table_id=table_id, column=column, metadata=meta), response)


@router.delete(
    "/{table_id}/columns/{name}", status_code=202, response_model=AcceptedOut, responses=CHANGE_ERRORS
)
async def remove_column(
    table_id: UUID, name: str, tables: Tables, meta: Metadata, response: Response
) -> AcceptedOut:
    return _accepted(await tables.remove_column(table_id=table_id, name=name, metadata=meta), response)


@router.get("/{table_id}/events", response_model=list[EventOut], responses=responses(404, 422, 503))
async def table_events(table_id: UUID, reads: Reads) -> list[EventOut]:
    events = await reads.table_events(table_id)
    if not events:
        raise TableNotFound(f"no table with id {table_id}")
    return [EventOut.model_validate(e) for e in events]


@router.post("/{table_id}/reconcile", status_code=202, response_model=AcceptedOut, responses=CHANGE_ERRORS)
async def reconcile(
    table_id: UUID, body: ReconcileRequest, tables: Tables, meta: Metadata, response: Response
) -> AcceptedOut:
    """Queue a reconciliation: ``repair`` the physical table, or ``adopt`` its live schema."""
    accepted = await tables.reconcile(table_id=table_id, strategy=body.strategy, metadata=meta)
    return _accepted(accepted, response)
