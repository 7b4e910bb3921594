from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from schemasaga.api import pages
from schemasaga.api.deps import Metadata, Reader, Reads, Services, ServicesDep, Tables, require_table
from schemasaga.api.errors import problems, refuse_other_methods
from schemasaga.api.idempotency import IdempotentWriter
from schemasaga.api.models import (
    AcceptedOut,
    ColumnPatchRequest,
    ColumnSpec,
    EventOut,
    IndexSpec,
    NewTableRequest,
    OperationOut,
    PlanOut,
    ReconcileRequest,
    RenameTableRequest,
    TableOut,
    TablePage,
    TrackTableRequest,
)
from schemasaga.api.paging import Limit, link_next, next_after
from schemasaga.domain.errors import InvalidColumn, TableNotFound
from schemasaga.domain.table import Table
from schemasaga.services.tables import Accepted, Asked, Planned
from schemasaga.services.waiting import MAX_WAIT_SECONDS

router = APIRouter(prefix="/v1/tables", tags=["tables"], responses=problems(401, 403))

CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **problems(400, 404, 409, 412, 422, 503),
    200: {
        "model": OperationOut,
        "description": "`?wait=SECONDS`: the operation finished within that time, as "
        "`GET /v1/operations/{id}` shows it.",
    },
}
PLANNED: dict[int | str, dict[str, Any]] = {
    **CHANGE_ERRORS,
    200: {
        "model": PlanOut | OperationOut,
        "description": "`?dry_run=true`: the plan, nothing was written; or, `?wait=SECONDS`: the operation "
        "finished within that time, as `GET /v1/operations/{id}` shows it.",
    },
}

DryRun = Annotated[bool, Query(description="answer the plan (statements, locks, warnings) and write nothing")]
Wait = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="wait up to this many seconds (at most 30) for the operation to finish: 200 and the "
        "operation when it did, 202 as without it when the time ran out",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(description='the table version the change was decided on (its ETag, `"7"`); 412 when it moved on'),
]
_ETAG = re.compile(r'\s*(?:W/)?"?(\d{1,9})"?\s*')


def _asked(if_match: str | None, dry_run: bool) -> Asked:
    if if_match is None or if_match.strip() == "*":
        return Asked(dry_run=dry_run)
    match = _ETAG.fullmatch(if_match)
    if match is None:
        raise InvalidColumn(f'If-Match {if_match!r} is not a table version such as "7"')
    return Asked(expected_version=int(match.group(1)), dry_run=dry_run)


async def _answer(
    result: Accepted | Planned, response: Response, *, wait: float | None = None, services: Services
) -> AcceptedOut | JSONResponse:
    if isinstance(result, Planned):
        return JSONResponse(PlanOut.of(result).model_dump(mode="json"), status_code=200)
    out = AcceptedOut.of(result)
    if wait is not None:
        finished = await services.waits.wait(result.operation_id, timeout=wait)
        if finished is not None:
            body = OperationOut.model_validate(finished).model_dump(mode="json")
            return JSONResponse(body, status_code=200, headers={"Location": out.operation_url})
    response.headers["Location"] = out.operation_url
    return out


@router.post("", status_code=202, response_model=AcceptedOut, responses=PLANNED)
async def create_table(
    body: NewTableRequest,
    caller: IdempotentWriter,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
) -> AcceptedOut | JSONResponse:
    """Create a table: the four default columns (`id`, `name`, `created_at`, `updated_at`), then the given
    columns, and the given indexes."""
    caller.require_database(body.database)
    columns = tuple(c.to_column() for c in body.columns)
    indexes = tuple(i.to_index(body.name) for i in body.indexes)
    result = await tables.create_table(
        name=body.name,
        database=body.database,
        metadata=meta,
        columns=columns,
        indexes=indexes,
        dry_run=dry_run,
    )
    return await _answer(result, response, wait=wait, services=services)


@router.post("/track", status_code=202, response_model=AcceptedOut, responses=CHANGE_ERRORS)
async def track_table(
    body: TrackTableRequest,
    caller: IdempotentWriter,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    wait: Wait = None,
) -> AcceptedOut | JSONResponse:
    """Start managing a table that exists already: its live schema becomes its metadata (no DDL)."""
    caller.require_database(body.database)
    return await _answer(
        await tables.track_table(name=body.name, database=body.database, metadata=meta),
        response,
        wait=wait,
        services=services,
    )


# `track` is a literal beside `{table_id}`: `PATCH /v1/tables/track` must be a 405, not a bad table id.
refuse_other_methods(router, "/track", {"POST"})


@router.get("", response_model=TablePage, responses=problems(400, 422, 503))
async def list_tables(
    caller: Reader,
    reads: Reads,
    services: ServicesDep,
    request: Request,
    response: Response,
    database: str | None = None,
    include_deleted: bool = False,
    include_trashed: Annotated[
        bool, Query(description="also list deleted tables whose rows are in the trash (restorable)")
    ] = False,
    after: Annotated[
        UUID | None, Query(description="keyset cursor: last table_id of the previous page")
    ] = None,
    limit: Limit = 100,
    at: Annotated[
        datetime | None,
        Query(
            description="the whole system as it was at this moment (ISO 8601): each table as "
            "`GET /v1/tables/{id}?at=` answers it, whole transactions only"
        ),
    ] = None,
) -> Response:
    """The tables of every database the token may touch (or of `database` only)."""
    if database is not None:
        caller.require_database(database)
    if at is not None:
        tables = await reads.tables_at(
            at,
            database=database,
            include_deleted=include_deleted,
            after=after,
            limit=limit,
            databases=caller.databases,
        )
        known = services.connections.known_engine
        items = [
            pages.table_then(t, engine=known(t.database))
            if isinstance(t, Table)
            else pages.table_view(t, engine=known(t.database))
            for t in tables
        ]
        at_next = next_after(len(items), limit, tables[-1].table_id if tables else None)
        link_next(request, response, at_next)
        return pages.table_page(items, next_after=at_next, headers_of=response)
    listings = await reads.list_table_listings(
        database=database,
        include_deleted=include_deleted,
        include_trashed=include_trashed,
        after=after,
        limit=limit,
        databases=caller.databases,
    )
    known = services.connections.known_engine
    items = [pages.table_listing(t, engine=known(t.database)) for t in listings]
    after_next = next_after(len(items), limit, listings[-1].table_id if listings else None)
    link_next(request, response, after_next)
    return pages.table_page(items, next_after=after_next, headers_of=response)


@router.get("/{table_id}", response_model=TableOut, responses=problems(404, 422, 503))
async def get_table(
    table_id: UUID,
    caller: Reader,
    reads: Reads,
    services: ServicesDep,
    response: Response,
    at_version: Annotated[int | None, Query(ge=0, description="the table as it was at this version")] = None,
    at: Annotated[
        datetime | None,
        Query(description="the table as it was at this moment (ISO 8601), whole transactions only"),
    ] = None,
) -> TableOut:
    await require_table(caller, reads, table_id)
    if at_version is None and at is None:
        view = await reads.get_table(table_id)
        if view is None:
            raise TableNotFound(f"no table with id {table_id}")
        out = TableOut.of(view, engine=services.connections.known_engine(view.database))
    else:
        table = await reads.table_at(table_id, version=at_version, moment=at)
        out = TableOut.at(table, engine=services.connections.known_engine(table.database))
    response.headers["ETag"] = f'"{out.version}"'
    return out


@router.patch("/{table_id}", status_code=202, response_model=AcceptedOut, responses=PLANNED)
async def rename_table(
    table_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    body: RenameTableRequest,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    """Rename the table."""
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    return await _answer(
        await tables.rename_table(table_id=table_id, name=body.name, metadata=meta, asked=asked),
        response,
        wait=wait,
        services=services,
    )


@router.delete("/{table_id}", status_code=202, response_model=AcceptedOut, responses=PLANNED)
async def delete_table(
    table_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
    purge: Annotated[
        bool, Query(description="drop the table and its rows at once instead of moving it to the trash")
    ] = False,
) -> AcceptedOut | JSONResponse:
    """Delete the table: it goes to the trash (restorable until its retention ends), or with
    `?purge=true` (or when the trash is off) is dropped at once."""
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    return await _answer(
        await tables.delete_table(table_id=table_id, metadata=meta, asked=asked, purge=purge),
        response,
        wait=wait,
        services=services,
    )


@router.post(
    "/{table_id}/columns",
    status_code=202,
    response_model=AcceptedOut,
    responses=PLANNED,
)
async def add_column(
    table_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    body: ColumnSpec,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    result = await tables.add_column(table_id=table_id, column=body.to_column(), metadata=meta, asked=asked)
    return await _answer(result, response, wait=wait, services=services)


@router.patch(
    "/{table_id}/columns/{name}",
    status_code=202,
    response_model=AcceptedOut,
    responses=PLANNED,
)
async def alter_column(
    table_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    name: str,
    body: ColumnPatchRequest,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    """Rename a column, change its type, nullability, default or uniqueness; a field left out stays as it
    is, and `"default": null` drops the default."""
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    result = await tables.alter_column(
        table_id=table_id, name=name, patch=body.to_patch(), metadata=meta, asked=asked
    )
    return await _answer(result, response, wait=wait, services=services)


@router.delete(
    "/{table_id}/columns/{name}",
    status_code=202,
    response_model=AcceptedOut,
    responses=PLANNED,
)
async def remove_column(
    table_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    name: str,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    return await _answer(
        await tables.remove_column(table_id=table_id, name=name, metadata=meta, asked=asked),
        response,
        wait=wait,
        services=services,
    )


@router.post(
    "/{table_id}/indexes",
    status_code=202,
    response_model=AcceptedOut,
    responses=PLANNED,
)
async def add_index(
    table_id: UUID,
    caller: IdempotentWriter,
    body: IndexSpec,
    tables: Tables,
    reads: Reads,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    view = await reads.get_table(table_id)
    if view is None:
        raise TableNotFound(f"no table with id {table_id}")
    index = body.to_index(view.name)
    return await _answer(
        await tables.add_index(table_id=table_id, index=index, metadata=meta, asked=asked),
        response,
        wait=wait,
        services=services,
    )


@router.delete(
    "/{table_id}/indexes/{name}",
    status_code=202,
    response_model=AcceptedOut,
    responses=PLANNED,
)
async def drop_index(
    table_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    name: str,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    await require_table(caller, reads, table_id)
    asked = _asked(if_match, dry_run)
    return await _answer(
        await tables.drop_index(table_id=table_id, name=name, metadata=meta, asked=asked),
        response,
        wait=wait,
        services=services,
    )


@router.get("/{table_id}/events", response_model=list[EventOut], responses=problems(404, 422, 503))
async def table_events(
    table_id: UUID,
    caller: Reader,
    reads: Reads,
    request: Request,
    response: Response,
    after: Annotated[
        int | None, Query(ge=0, description="keyset cursor: the last version of the previous page")
    ] = None,
    limit: Limit = 100,
) -> list[EventOut]:
    """The table's events, oldest first, a page at a time: the next page's URL is in the `Link` header
    (`rel="next"`), absent on the last page."""
    await require_table(caller, reads, table_id)
    events = await reads.table_events(table_id, after=after, limit=limit)
    if not events and (after is None or await reads.get_table(table_id) is None):
        raise TableNotFound(f"no table with id {table_id}")
    link_next(request, response, next_after(len(events), limit, events[-1].version if events else None))
    return [EventOut.model_validate(e) for e in events]


@router.post(
    "/{table_id}/reconcile",
    status_code=202,
    response_model=AcceptedOut,
    responses=CHANGE_ERRORS,
)
async def reconcile(
    table_id: UUID,
    body: ReconcileRequest,
    caller: IdempotentWriter,
    reads: Reads,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    wait: Wait = None,
) -> AcceptedOut | JSONResponse:
    """Queue a reconciliation: ``repair`` the physical table, or ``adopt`` its live schema."""
    await require_table(caller, reads, table_id)
    accepted = await tables.reconcile(table_id=table_id, strategy=body.strategy, metadata=meta)
    return await _answer(accepted, response, wait=wait, services=services)
