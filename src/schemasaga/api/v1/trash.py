"""The trash: deleted tables and removed columns, restorable until their retention ends (issue 9)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from schemasaga.api.deps import Metadata, Reader, Reads, ServicesDep
from schemasaga.api.errors import problems
from schemasaga.api.idempotency import IdempotentWriter
from schemasaga.api.models import AcceptedOut, RestoreRequest, TrashOut
from schemasaga.services.tables import Accepted
from schemasaga.services.trash import TrashCommands
from schemasaga.services.views import TrashView

router = APIRouter(prefix="/v1/trash", tags=["trash"], responses=problems(401, 403))


async def _entry(trash: TrashCommands, caller: Reader, trash_id: UUID) -> TrashView:
    view = await trash.entry(trash_id)
    caller.require_database(view.database)
    return view


def _accepted(accepted: Accepted, response: Response) -> AcceptedOut:
    out = AcceptedOut.of(accepted)
    response.headers["Location"] = out.operation_url
    return out


@router.get("", response_model=list[TrashOut], responses=problems(400, 422, 503))
async def list_trash(
    caller: Reader, reads: Reads, services: ServicesDep, database: str | None = None
) -> list[TrashOut]:
    """What is in the trash (of `database`, or of every database the token may touch), newest first."""
    if database is not None:
        caller.require_database(database)
    views = await reads.list_trash(database=database, databases=caller.databases)
    return [TrashOut.of(item) for item in await services.trash.with_rows(views)]


@router.get("/{trash_id}", response_model=TrashOut, responses=problems(400, 404, 422, 503))
async def get_trash(trash_id: UUID, caller: Reader, services: ServicesDep) -> TrashOut:
    view = await _entry(services.trash, caller, trash_id)
    return TrashOut.of((await services.trash.with_rows([view]))[0])


@router.post(
    "/{trash_id}/restore",
    status_code=202,
    response_model=AcceptedOut,
    responses=problems(400, 404, 409, 410, 422, 503),
)
async def restore(
    trash_id: UUID,
    caller: IdempotentWriter,
    services: ServicesDep,
    meta: Metadata,
    response: Response,
    body: RestoreRequest | None = None,
) -> AcceptedOut:
    """Bring the table or column back with its rows, under its name or `name` (409 `name_taken` when
    that name is in use, 410 `purged` when its data is gone)."""
    await _entry(services.trash, caller, trash_id)
    name = body.name if body is not None else None
    return _accepted(await services.trash.restore(trash_id=trash_id, metadata=meta, name=name), response)


@router.delete(
    "/{trash_id}",
    status_code=202,
    response_model=AcceptedOut,
    responses=problems(400, 404, 409, 410, 422, 503),
)
async def purge(
    trash_id: UUID, caller: IdempotentWriter, services: ServicesDep, meta: Metadata, response: Response
) -> AcceptedOut:
    """Drop the entry's data now (410 `purged` when it is gone already)."""
    await _entry(services.trash, caller, trash_id)
    return _accepted(await services.trash.purge(trash_id=trash_id, metadata=meta), response)
