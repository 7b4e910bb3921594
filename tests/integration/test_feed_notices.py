"""What appends do for the live feed (migration 0017): notify only while a listener says it listens, never
in a way a listener starting during an append could miss, heard by the feed's own listener; and take their
position only once their transaction has its xid."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import psycopg
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb.feed import CHANNEL, PgFeed
from schemasaga.eventstore import EventStore, NewEvent
from schemasaga.sql import queries
from tests.integration.test_eventstore import wait_until_blocked

Q = queries("feed")


async def connect(conninfo: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(conninfo, autocommit=True)


async def pid_of(conn: psycopg.AsyncConnection[Any]) -> int:
    return conn.info.backend_pid


async def senders(listener: psycopg.AsyncConnection[Any], *, until: int) -> list[int]:
    """The pids of the notices heard, in commit order, up to and including the first from ``until``."""
    heard: list[int] = []
    while until not in heard:
        got = [n.pid async for n in listener.notifies(timeout=30, stop_after=1)]
        assert got, f"no notice from session {until} in 30 s (heard {heard})"
        heard += got
    return heard


async def test_appends_notify_only_while_a_listener_says_it_listens(core_db: str, store: EventStore) -> None:
    async with (
        await connect(core_db) as listener,
        await connect(core_db) as quiet,
        await connect(core_db) as a,
        await connect(core_db) as b,
    ):
        await listener.execute(f"LISTEN {CHANNEL}")
        # LISTEN alone: nobody said it listens, so this append notifies nobody.
        await store.append("quiet", [NewEvent("Happened", {})], conn=quiet)
        await listener.execute(Q["listening"])
        await listener.execute(Q["heard_since"])
        # Two appends in one transaction: one notice; then another session's, after it.
        async with a.transaction():
            await store.append("a", [NewEvent("Happened", {})], conn=a)
            await store.append("a2", [NewEvent("Happened", {})], conn=a)
        await store.append("b", [NewEvent("Happened", {})], conn=b)
        # Notices come in commit order: one from the quiet session would come first.
        assert await senders(listener, until=await pid_of(b)) == [await pid_of(a), await pid_of(b)]


async def test_a_listener_starting_during_a_silent_append_waits_for_its_end(
    core_db: str, store: EventStore
) -> None:
    async with await connect(core_db) as listener, await connect(core_db) as writer:
        await writer.set_autocommit(False)
        await store.append("s", [NewEvent("Happened", {})], conn=writer)  # no listener: no notice, not yet
        await listener.execute(f"LISTEN {CHANNEL}")
        await listener.execute(Q["listening"])
        settling = asyncio.create_task(listener.execute(Q["heard_since"]))
        await wait_until_blocked(core_db, waiting=await pid_of(listener), holder=await pid_of(writer))
        assert not settling.done()
        await writer.commit()
        await settling  # the listener reads after this: the silent append is visible to it
        with psycopg.connect(core_db) as conn:
            assert conn.execute("SELECT count(*) FROM event_store_events").fetchone() == (1,)


async def test_the_feed_listener_hears_appends(
    core_db: str, pool: AsyncConnectionPool[Any], store: EventStore
) -> None:
    feed = PgFeed(pool, core_db)
    try:
        async with feed.subscribe() as wakeups:
            subscriber: Any = wakeups
            # The listener wakes every follower once it listens (and has waited for silent appends).
            await asyncio.wait_for(subscriber.heard.wait(), 30)
            subscriber.heard.clear()
            await store.append("s", [NewEvent("Happened", {})])
            # Only a notice sets it now (the follower's poll is not involved): it must come.
            await asyncio.wait_for(subscriber.heard.wait(), 30)
    finally:
        await feed.close()


def test_a_position_is_taken_with_the_transactions_xid_already_assigned(core_db: str) -> None:
    # The feed's settled position relies on it (services/feed.py); the default is a CASE since 0017. In
    # fresh transactions, several times: nextval alone takes an xid only when it logs (every 32nd value).
    with psycopg.connect(core_db) as conn:
        for _ in range(40):
            with conn.transaction():
                assert conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone() == (None,)
                position = conn.execute("SELECT event_store_next_position()").fetchone()
                xid = conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()
                assert position is not None and position[0] is not None
                assert xid is not None and xid[0] is not None


async def test_the_feed_listener_hears_appends_while_a_silent_append_stays_open(
    core_db: str, pool: AsyncConnectionPool[Any], store: EventStore
) -> None:
    feed = PgFeed(pool, core_db)
    try:
        async with await connect(core_db) as writer:
            await writer.set_autocommit(False)
            await store.append("open", [NewEvent("Happened", {})], conn=writer)  # silent, left open
            async with feed.subscribe() as wakeups:
                subscriber: Any = wakeups
                # The listener does not wait for the open transaction for ever: it listens, and wakes all.
                await asyncio.wait_for(subscriber.heard.wait(), 30)
                subscriber.heard.clear()
                await store.append("s", [NewEvent("Happened", {})])
                await asyncio.wait_for(subscriber.heard.wait(), 30)
            await writer.rollback()
    finally:
        await feed.close()


async def listeners_said(core_db: str) -> int:
    """Sessions holding the listener lock of migration 0017."""
    async with await connect(core_db) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::int = -690804931 AND objid = 1 AND objsubid = 2 AND granted"
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_the_feed_stops_listening_when_its_last_follower_leaves(
    core_db: str, pool: AsyncConnectionPool[Any]
) -> None:
    feed = PgFeed(pool, core_db)
    loop = asyncio.get_running_loop()
    try:
        async with feed.subscribe() as first, feed.subscribe():
            await asyncio.wait_for(cast(Any, first).heard.wait(), 30)
            assert await listeners_said(core_db) == 1
        deadline = loop.time() + 30
        while await listeners_said(core_db):  # its connection closes in the background
            assert loop.time() < deadline, "the feed still listens with nobody following"
            await asyncio.sleep(0.05)
        async with feed.subscribe() as again:  # and listens again for the next follower
            await asyncio.wait_for(cast(Any, again).heard.wait(), 30)
            assert await listeners_said(core_db) == 1
    finally:
        await feed.close()
