from __future__ import annotations

import contextlib
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from schemasaga.api.deps import Metadata, Reader, Reads, ServicesDep, Tables, require_table
from schemasaga.api.errors import problems
from schemasaga.api.idempotency import IdempotentWriter
from schemasaga.api.models import AcceptedOut, OperationOut
from schemasaga.api.paging import Limit, link_next, next_after

# An undo is a change of the operation's table, asked for and answered as the table routes' changes are.
from schemasaga.api.v1.tables import PLANNED, DryRun, IfMatch, Wait
from schemasaga.api.v1.tables import _answer as answer_change
from schemasaga.api.v1.tables import _asked as asked_of
from schemasaga.domain.errors import OperationNotFound
from schemasaga.services.waiting import FINISHED, MAX_WAIT_SECONDS

router = APIRouter(prefix="/v1/operations", tags=["operations"], responses=problems(401, 403))


@router.get("/{operation_id}", response_model=OperationOut, responses=problems(404, 422, 503))
async def get_operation(
    operation_id: UUID,
    caller: Reader,
    reads: Reads,
    services: ServicesDep,
    wait: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_WAIT_SECONDS,
            description="long-poll: answer as soon as the operation is finished (completed or rejected), "
            "or after this many seconds (at most 30) as it is then",
        ),
    ] = None,
) -> OperationOut:
    with contextlib.ExitStack() as stack:
        # A long poll watches the operation before its one read: an outcome committed after that read
        # still wakes it, and the wait begins without reading the operation again.
        watch = stack.enter_context(services.waits.watch(operation_id)) if wait is not None else None
        view = await reads.get_operation(operation_id)
        if view is None:
            raise OperationNotFound(f"no operation with id {operation_id}")
        await require_table(caller, reads, view.table_id)
        if watch is not None and wait is not None and view.status not in FINISHED:
            view = await watch.finished(timeout=wait, read_first=False) or await reads.get_operation(
                operation_id
            )
            if view is None:
                raise OperationNotFound(f"no operation with id {operation_id}")
    return OperationOut.model_validate(view)


@router.get("", response_model=list[OperationOut], responses=problems(422, 503))
async def list_operations(
    caller: Reader,
    reads: Reads,
    request: Request,
    response: Response,
    table_id: UUID | None = None,
    status: Literal["pending", "running", "completed", "rejected"] | None = None,
    after: Annotated[
        UUID | None, Query(description="keyset cursor: the last operation_id of the previous page")
    ] = None,
    limit: Limit = 100,
) -> list[OperationOut]:
    """Newest first, a page at a time: the next page's URL is in the `Link` header (`rel="next"`),
    absent on the last page."""
    views = await reads.list_operations(
        table_id=table_id, status=status, limit=limit, databases=caller.databases, after=after
    )
    link_next(request, response, next_after(len(views), limit, views[-1].operation_id if views else None))
    return [OperationOut.model_validate(v) for v in views]


@router.post(
    "/{operation_id}/undo",
    status_code=202,
    response_model=AcceptedOut,
    responses=PLANNED,
)
async def undo_operation(
    operation_id: UUID,
    caller: IdempotentWriter,
    reads: Reads,
    tables: Tables,
    meta: Metadata,
    response: Response,
    services: ServicesDep,
    dry_run: DryRun = False,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> AcceptedOut | JSONResponse:
    """Start the inverse of a completed operation as a new operation of its table: a rename renamed back,
    a column's type, default, nullability or uniqueness changed back (its rows checked as for the change
    itself), an added index dropped, a dropped one rebuilt, an added column removed. 409 when the operation
    is not completed (`operation_not_completed`), undone already (`already_undone`), depended on by a later
    operation of the table (`undo_conflict`, naming it), or has no inverse yet (`undo_unsupported`: a
    created or deleted table, a removed column need the trash). `If-Match` is the table's version."""
    view = await reads.get_operation(operation_id)
    if view is None:
        raise OperationNotFound(f"no operation with id {operation_id}")
    await require_table(caller, reads, view.table_id)
    result = await tables.undo(
        table_id=view.table_id, operation_id=operation_id, metadata=meta, asked=asked_of(if_match, dry_run)
    )
    return await answer_change(result, response, wait=wait, services=services)
