"""The live event feed: the global log in position order, each event delivered once, none skipped.

Positions come from a sequence, so they are not commit-ordered: a transaction may take position 5, another
position 6 and commit first. A reader that delivered 6 and resumed "after 6" would never see 5. So the feed
delivers only up to a *settled* position, one below which nothing can still appear. Each look
(``FeedSource.positions``):

1. reads S, the last position the sequence handed out;
2. then, in a later statement, R: the transactions of this database running now (their xids, from
   ``pg_stat_activity``, which lists every running transaction; a snapshot's list stops at its xmax,
   below transactions that took an xid but have not ended yet).

A transaction takes its xid before its first position (migration 0014 makes sure of it), so every
transaction holding a position <= S had an xid before step 1: by step 2 it has ended, or it is in R. When R
is empty, S is settled at once; otherwise (S, R) waits for a later look in which none of R runs any more.
A client resumes after the last position it saw (SSE ``Last-Event-ID``) with no gap and no duplicate, across
restarts: positions are durable and the bound is recomputed from the database.

The sequence must hand out values in time order (no ``CACHE`` > 1 on it), which a bigserial does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from schemasaga.domain import database as database_events
from schemasaga.domain import events as table_events
from schemasaga.domain import webhooks
from schemasaga.domain.access import TokenCreated, TokenRevoked
from schemasaga.domain.errors import InvalidLastEventId, UnknownEventType
from schemasaga.eventstore import RecordedEvent

BATCH = 200
"""Events read per query: what one client holds in memory at most (besides what its socket buffers)."""


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """Which events a follower wants. ``databases``: only those of these databases (a token limited to
    them), None: every event."""

    stream: str | None = None
    event_types: tuple[str, ...] | None = None
    correlation_id: str | None = None
    databases: frozenset[str] | None = None


class FeedSource(Protocol):
    """The core database as the feed reads it."""

    async def positions(self) -> tuple[int, frozenset[int]]:
        """(S, R): the last position the sequence handed out (0 when none), then, read after it, the xids
        of this database's running transactions."""

    async def read(self, feed: FeedFilter, *, after: int, to: int, limit: int) -> list[RecordedEvent]:
        """Events with after < position <= to that pass ``feed``, in position order."""

    def subscribe(self) -> AbstractAsyncContextManager[Wakeups]:
        """Hear of appends from now on, until the context ends."""


class Wakeups(Protocol):
    stopped: bool
    """The process is stopping: followers end."""

    async def wait(self, timeout: float) -> None:
        """Return when events may have been appended since the last return (a notice), or after
        ``timeout`` seconds."""


class Watermark:
    """The settled position, from successive (S, R) looks (see the module's docstring)."""

    def __init__(self, settled: int = 0) -> None:
        self.settled = settled
        self._pending: tuple[int, frozenset[int]] | None = None

    @property
    def pending(self) -> bool:
        """Whether a look waits for running transactions to end."""
        return self._pending is not None

    def observe(self, *, high: int, running: frozenset[int]) -> int:
        """``high`` read before ``running``; returns the settled position."""
        if self._pending is not None and not (self._pending[1] & running):
            self.settled = max(self.settled, self._pending[0])
            self._pending = None
        if not running:
            self.settled = max(self.settled, high)
            self._pending = None
        elif self._pending is None and high > self.settled:
            self._pending = (high, running)
        return self.settled


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Nothing new for a while: a keep-alive comment is due."""


async def follow(
    source: FeedSource,
    feed: FeedFilter,
    *,
    after: int,
    poll_interval: float = 1.0,
    recheck: float = 0.05,
    keep_alive: float = 15.0,
) -> AsyncGenerator[RecordedEvent | KeepAlive, None]:
    """Every event of ``feed`` positioned after ``after``, in position order, endlessly; a
    :class:`KeepAlive` after ``keep_alive`` seconds without one. Wakes on appends, polls every
    ``poll_interval`` seconds (a missed notice), and every ``recheck`` seconds while transactions that may
    hold lower positions run."""
    loop = asyncio.get_running_loop()
    watermark = Watermark()
    cursor = after
    quiet_since = loop.time()
    async with source.subscribe() as wakeups:
        while True:
            high, running = await source.positions()
            settled = watermark.observe(high=high, running=running)
            while cursor < settled:
                batch = await source.read(feed, after=cursor, to=settled, limit=BATCH)
                for event in batch:
                    quiet_since = loop.time()
                    yield event
                if len(batch) < BATCH:
                    cursor = settled
                else:
                    cursor = batch[-1].position
            if loop.time() - quiet_since >= keep_alive:
                quiet_since = loop.time()
                yield KeepAlive()
            wait = recheck if watermark.pending else poll_interval
            wait = min(wait, max(0.0, keep_alive - (loop.time() - quiet_since)))
            await wakeups.wait(wait)
            if wakeups.stopped:
                return


KNOWN_EVENT_TYPES: frozenset[str] = frozenset(
    [
        *table_events.EVENT_TYPES,
        *database_events.EVENT_TYPES,
        *webhooks.EVENT_TYPES,
        TokenCreated.type_name(),
        TokenRevoked.type_name(),
    ]
)


def parse_event_types(types: Sequence[str]) -> tuple[str, ...] | None:
    """The event types asked for (None: every one); raises UnknownEventType, naming the first unknown."""
    if not types:
        return None
    for event_type in types:
        if event_type not in KNOWN_EVENT_TYPES:
            raise UnknownEventType(
                f"unknown event type {event_type[:100]!r}: use one of {', '.join(sorted(KNOWN_EVENT_TYPES))}"
            )
    return tuple(dict.fromkeys(types))


MAX_POSITION = 2**63 - 1


def resume_position(*, last_event_id: str | None, after: int | None) -> int:
    """Where a follower starts: after its ``Last-Event-ID`` (a reconnecting EventSource sends it), else
    after ``after``, else from the start. Raises InvalidLastEventId for anything but a position."""
    if last_event_id is not None:
        text = last_event_id.strip()
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_POSITION:
            raise InvalidLastEventId(
                f"Last-Event-ID must be an event's position (a whole number >= 0), not {last_event_id[:40]!r}"
            )
        return int(text)
    if after is not None:
        if not 0 <= after <= MAX_POSITION:
            raise InvalidLastEventId(f"after must be an event's position (a whole number >= 0), not {after}")
        return after
    return 0


def without_ciphertexts(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data as the feed and webhooks show it: without the encrypted credentials some events
    record (``url_encrypted``, ``secret_encrypted``), which no reader needs."""
    return {k: v for k, v in data.items() if not k.endswith("_encrypted")}
