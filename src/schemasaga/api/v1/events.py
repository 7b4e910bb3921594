"""The live event feed: ``GET /v1/events/stream``, server-sent events (services/feed.py says how no event is
skipped nor repeated)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from schemasaga.api.deps import Reader, Reads, ServicesDep, require_table
from schemasaga.api.errors import problems
from schemasaga.api.models import FeedEventOut
from schemasaga.domain.access import Caller
from schemasaga.domain.database import STREAM_PREFIX as DATABASE_STREAM_PREFIX
from schemasaga.domain.errors import DomainError, TableNotFound
from schemasaga.domain.events import stream_name
from schemasaga.eventstore import RecordedEvent
from schemasaga.services.feed import (
    FeedFilter,
    FeedSource,
    KeepAlive,
    follow,
    parse_event_types,
    resume_position,
)

router = APIRouter(prefix="/v1/events", tags=["events"], responses=problems(401, 403))

EVENT_STREAM = "text/event-stream"
# What an EventSource waits before reconnecting (milliseconds), sent once at the start.
RECONNECT_MS = 1000
MAX_STREAM_SECONDS = 86400.0


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events, endlessly: `id:` the event's position, `event:` its type, "
            "`data:` the event as JSON; a `: keep-alive` comment every 15 s without events.",
            "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        },
        **problems(400, 404, 422, 503),
    },
)
async def stream_events(
    caller: Reader,
    reads: Reads,
    services: ServicesDep,
    stream: Annotated[str | None, Query(max_length=300, description="only events of this stream")] = None,
    event_type: Annotated[
        list[str], Query(alias="type", description="only events of these types (repeat the parameter)")
    ] = [],  # noqa: B006 (FastAPI copies a list default)
    table_id: Annotated[UUID | None, Query(description="only the events of this table")] = None,
    correlation_id: Annotated[
        str | None, Query(max_length=200, description="only events of this correlation id")
    ] = None,
    after: Annotated[
        int | None, Query(description="start after this position (as `Last-Event-ID`, which wins)")
    ] = None,
    timeout: Annotated[
        float | None,
        Query(gt=0, le=MAX_STREAM_SECONDS, description="end the stream after this many seconds"),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    start = resume_position(last_event_id=last_event_id, after=after)
    if table_id is not None:
        if stream is not None and stream != stream_name(table_id):
            raise DomainError("give either table_id or stream, not both")
        if await reads.get_table(table_id) is None:
            raise TableNotFound(f"no table with id {table_id}")
        await require_table(caller, reads, table_id)
        stream = stream_name(table_id)
    elif stream is not None:
        await _require_stream(caller, reads, stream)
    feed = FeedFilter(
        stream=stream,
        event_types=parse_event_types(event_type),
        correlation_id=correlation_id,
        databases=caller.databases,
    )
    source = services.feed
    # Before the answer starts: a value the core database refuses (400) or its outage (503) is answered as
    # an error, not as a stream cut at once.
    await source.positions()
    await source.read(feed, after=start, to=start, limit=1)
    return StreamingResponse(
        _sse(source, feed, start=start, timeout=timeout),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _require_stream(caller: Caller, reads: Reads, stream: str) -> None:
    """A token limited to databases may ask for a stream of theirs only (the feed filters the rest out
    anyway: this says so rather than stay silent)."""
    if caller.databases is None:
        return
    if stream.startswith(DATABASE_STREAM_PREFIX):
        caller.require_database(stream.removeprefix(DATABASE_STREAM_PREFIX))
    elif stream.startswith("Table$"):
        try:
            table_id = UUID(stream.removeprefix("Table$"))
        except ValueError:
            return
        await require_table(caller, reads, table_id)


async def _sse(
    source: FeedSource, feed: FeedFilter, *, start: int, timeout: float | None
) -> AsyncIterator[str]:
    yield f"retry: {RECONNECT_MS}\n\n"
    events = follow(source, feed, after=start)
    try:
        async with asyncio.timeout(timeout):
            async for item in events:
                if isinstance(item, KeepAlive):
                    yield ": keep-alive\n\n"
                    continue
                data = render_event(item).decode()
                yield f"id: {item.position}\nevent: {item.event_type}\ndata: {data}\n\n"
    except TimeoutError:
        return
    finally:
        await events.aclose()


def render_event(event: RecordedEvent) -> bytes:
    """An event as the feed sends it and a webhook delivery's body: one line of JSON."""
    return FeedEventOut.model_validate(event).model_dump_json().encode()
