"""The global event log (every stream), a page at a time."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from schemasaga.api.deps import Reader, Reads
from schemasaga.api.errors import problems
from schemasaga.api.models import EventOut, EventPage
from schemasaga.api.paging import Limit, link_next, next_after
from schemasaga.domain.access import Scope

router = APIRouter(prefix="/v1/events", tags=["events"], responses=problems(401, 403))


@router.get("", response_model=EventPage, responses=problems(422, 503))
async def list_events(
    caller: Reader,
    reads: Reads,
    request: Request,
    response: Response,
    after: Annotated[
        UUID | None, Query(description="keyset cursor: the last event_id of the previous page")
    ] = None,
    limit: Limit = 100,
) -> EventPage:
    """Every event, oldest first, in commit-safe order (by writing transaction, then position): an event
    whose transaction is still running is shown only once no event can commit before it, so a reader
    walking the pages while events are appended sees each event once and misses none. Needs a token
    limited to no database (the log holds every database's events)."""
    caller.require(Scope.READ, every_database=True)
    events = await reads.log_page(after=after, limit=limit)
    after_next = next_after(len(events), limit, events[-1].event_id if events else None)
    link_next(request, response, after_next)
    return EventPage(items=[EventOut.model_validate(e) for e in events], next_after=after_next)
