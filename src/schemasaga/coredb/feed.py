"""The live event feed on PostgreSQL: :class:`~schemasaga.services.feed.FeedSource`, and the appends heard
on one ``LISTEN`` connection per process however many clients follow (migration 0014 notifies, and
migration 0017 only while a listener holds its advisory lock)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.domain.database import stream_name as database_stream
from schemasaga.eventstore import RecordedEvent
from schemasaga.eventstore.jsoncodec import loads
from schemasaga.services.feed import FeedFilter, Wakeups, without_ciphertexts
from schemasaga.sql import queries

log = logging.getLogger(__name__)
Q = queries("feed")

CHANNEL = "schemasaga_events_appended"


class _Subscriber:
    def __init__(self) -> None:
        self.heard = asyncio.Event()
        self.stopped = False

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.heard.wait(), timeout)
        self.heard.clear()


class PgFeed:
    def __init__(self, pool: AsyncConnectionPool[Any], conninfo: str) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self._subscribers: set[_Subscriber] = set()
        self._listener: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()  # listeners cancelled, their connections closing
        self._stopped = False

    async def positions(self) -> tuple[int, frozenset[int]]:
        # Two statements, in this order, in a transaction of their own: PostgreSQL reads the backends'
        # states once per transaction, at the first look, which must come after the sequence's.
        async with self._pool.connection() as conn:
            high = await (await conn.execute(Q["high_position"])).fetchone()
            running = await (await conn.execute(Q["running"])).fetchone()
        assert high is not None and running is not None
        return int(high[0]), frozenset(running[0])

    async def read(self, feed: FeedFilter, *, after: int, to: int, limit: int) -> list[RecordedEvent]:
        async with self._pool.connection() as conn:
            return await self.read_on(conn, feed, after=after, to=to, limit=limit)

    async def read_on(
        self, conn: psycopg.AsyncConnection[Any], feed: FeedFilter, *, after: int, to: int, limit: int
    ) -> list[RecordedEvent]:
        """``read`` on the caller's connection (in its transaction)."""
        params = {
            "after": after,
            "to": to,
            "limit": limit,
            "event_types": None if feed.event_types is None else list(feed.event_types),
            "correlation_id": feed.correlation_id,
            "stream": feed.stream,
            "databases": None if feed.databases is None else sorted(feed.databases),
            "database_streams": [database_stream(d) for d in sorted(feed.databases or ())],
        }
        cur = conn.cursor(row_factory=tuple_row)
        await cur.execute(Q["read"], params, prepare=False)
        rows = await cur.fetchall()
        if not rows:
            return []
        docs = loads("[" + ",".join([text for row in rows for text in (row[4], row[5])]) + "]")
        return [
            RecordedEvent(
                event_id=row[1],
                event_type=row[2],
                data=without_ciphertexts(docs[2 * i]),
                metadata=docs[2 * i + 1],
                schema_version=row[3],
                position=row[0],
                created_at=row[6],
                valid_at=row[7],
                stream=row[8],
                version=row[9],
            )
            for i, row in enumerate(rows)
        ]

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Wakeups]:
        subscriber = _Subscriber()
        subscriber.stopped = self._stopped
        self._subscribers.add(subscriber)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="schemasaga-feed-notices")
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers and self._listener is not None:
                # Nobody follows: stop listening, so that appends stop notifying (migration 0017).
                listener, self._listener = self._listener, None
                listener.cancel()
                self._ending.add(listener)
                listener.add_done_callback(self._ending.discard)

    async def _listen(self) -> None:
        while True:
            try:
                conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # Appends notify only while a listener says it is there (migration 0017); then wait for
                    # those that appended without notifying before, and read.
                    await conn.execute(Q["listening"])
                    try:
                        async with conn.transaction():
                            await conn.execute(Q["heard_since_wait"])
                            await conn.execute(Q["heard_since"])
                    except psycopg.errors.LockNotAvailable:
                        # A transaction that appended silently is still open (idle in transaction, say):
                        # listen anyway; the followers' poll finds its events once it commits.
                        log.info("event feed notices: an append without notice is still open, listening")
                    self._wake_all()  # anything appended while not listening
                    async for _ in conn.notifies():
                        self._wake_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the core database restarting, say: followers poll meanwhile
                log.warning("event feed notices: listening failed (%s), again in 1 s", exc)
            await asyncio.sleep(1.0)

    def stop(self) -> None:
        """The process is stopping: every follower ends (its client resumes elsewhere), so that the
        HTTP server, which waits for the answers in progress, can stop."""
        self._stopped = True
        for subscriber in self._subscribers:
            subscriber.stopped = True
        self._wake_all()

    def _wake_all(self) -> None:
        for subscriber in self._subscribers:
            subscriber.heard.set()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            self._ending.add(self._listener)
            self._listener = None
        for listener in list(self._ending):
            with contextlib.suppress(asyncio.CancelledError):
                await listener
