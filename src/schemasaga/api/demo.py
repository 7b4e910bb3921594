"""The Rails demo's four endpoints, with its exact request and response shapes.

Extra fields (``operation_id``, ``database``, ``engine``, ``deleted``, ``version``) are added next to the
demo's ones."""

from __future__ import annotations

from fastapi import APIRouter

from schemasaga.api.deps import Metadata, Reader, Reads, ServicesDep, Tables, require_table
from schemasaga.api.errors import responses
from schemasaga.api.idempotency import IdempotentWriter
from schemasaga.api.models import (
    ColumnRequest,
    CreateTableRequest,
    DemoCreated,
    DemoOk,
    DemoShow,
    DemoTableRef,
    TableIdRequest,
    TableOut,
    parse_column,
    parse_table_id,
)
from schemasaga.domain.errors import TableNotFound
from schemasaga.services.tables import only_accepted

router = APIRouter(prefix="/table", tags=["demo"], responses=responses(401, 403))


@router.post(
    "/create",
    response_model=DemoCreated,
    responses=responses(400, 404, 409, 422, 503),
)
async def create(
    body: CreateTableRequest, caller: IdempotentWriter, tables: Tables, meta: Metadata
) -> DemoCreated:
    caller.require_database(body.database)
    accepted = only_accepted(await tables.create_table(name=body.name, database=body.database, metadata=meta))
    return DemoCreated(
        table=DemoTableRef(table_id=str(accepted.table_id)), operation_id=str(accepted.operation_id)
    )


@router.post("/delete", response_model=DemoOk, responses=responses(400, 404, 409, 422, 503))
async def delete(
    body: TableIdRequest, caller: IdempotentWriter, reads: Reads, tables: Tables, meta: Metadata
) -> DemoOk:
    table_id = parse_table_id(body.table_id)
    await require_table(caller, reads, table_id)
    accepted = only_accepted(await tables.delete_table(table_id=table_id, metadata=meta))
    return DemoOk(operation_id=str(accepted.operation_id))


@router.post("/show", response_model=DemoShow, responses=responses(400, 404, 422, 503))
async def show(body: TableIdRequest, caller: Reader, reads: Reads, services: ServicesDep) -> DemoShow:
    table_id = parse_table_id(body.table_id)
    view = await reads.get_table(table_id)
    if view is None:
        raise TableNotFound(f"no table with id {table_id}")
    caller.require_database(view.database)
    return DemoShow(table=TableOut.of(view, engine=services.connections.known_engine(view.database)))


@router.post("/column", response_model=DemoOk, responses=responses(400, 404, 409, 422, 503))
async def column(
    body: ColumnRequest, caller: IdempotentWriter, reads: Reads, tables: Tables, meta: Metadata
) -> DemoOk:
    table_id = parse_table_id(body.table_id)
    await require_table(caller, reads, table_id)
    spec = body.column
    if spec.type is None:
        accepted = only_accepted(await tables.remove_column(table_id=table_id, name=spec.name, metadata=meta))
    else:
        column = parse_column(spec.name, spec.type, nullable=spec.nullable)
        accepted = only_accepted(await tables.add_column(table_id=table_id, column=column, metadata=meta))
    return DemoOk(operation_id=str(accepted.operation_id))
