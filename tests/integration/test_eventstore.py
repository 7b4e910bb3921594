"""The event store against a real PostgreSQL core database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb.pool import check_connection
from schemasaga.eventstore import (
    ANY,
    NO_STREAM,
    Checkpoint,
    EventDuplicated,
    EventNotFound,
    EventStore,
    EventStoreError,
    NewEvent,
    RecordedEvent,
    Upcasters,
    WrongExpectedVersion,
)


def ev(event_type: str = "Happened", **data: Any) -> NewEvent:
    return NewEvent(event_type=event_type, data=data)


async def count_events(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM event_store_events")).fetchone()
        assert row is not None
        return int(row[0])


async def wait_until_blocked(conninfo: str, *, waiting: int, holder: int, timeout: float = 10.0) -> None:
    """Poll until the session ``waiting`` is blocked on a lock the session ``holder`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT %s = ANY(pg_blocking_pids(%s))", (holder, waiting))
            row = await cur.fetchone()
            if row is not None and row[0]:
                return
            assert loop.time() < deadline, f"session {waiting} never waited on a lock of session {holder}"
            await asyncio.sleep(0.01)


# Appending ------------------------------------------------------------------------------------------


async def test_append_one_event_returns_it_recorded(store: EventStore) -> None:
    [recorded] = await store.append("s", [ev("Created", name="t1")], expected_version=NO_STREAM)

    assert (recorded.stream, recorded.version, recorded.event_type) == ("s", 0, "Created")
    assert recorded.data == {"name": "t1"}
    assert recorded.position >= 1
    assert (await store.read_stream("s")) == [recorded]
    assert await store.stream_version("s") == 0


async def test_append_many_is_atomic_and_ordered(store: EventStore, pool: AsyncConnectionPool[Any]) -> None:
    recorded = await store.append("s", [ev(n=i) for i in range(5)])
    assert [r.version for r in recorded] == [0, 1, 2, 3, 4]
    assert [r.position for r in recorded] == sorted(r.position for r in recorded)

    # An event id stored already makes the whole batch fail, leaving nothing behind.
    duplicate = NewEvent("Happened", {}, event_id=recorded[0].event_id)
    with pytest.raises(EventDuplicated):
        await store.append("other", [ev(n=10), ev(n=11), duplicate])
    assert await count_events(pool) == 5
    assert await store.stream_version("other") == -1


async def test_no_stream_conflicts_when_the_stream_exists(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    await store.append("s", [ev()], expected_version=NO_STREAM)
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append("s", [ev(), ev()], expected_version=NO_STREAM)
    assert (info.value.stream, info.value.expected, info.value.actual) == ("s", NO_STREAM, 0)
    assert "'s'" in str(info.value) and "expected version -1" in str(info.value)
    assert await count_events(pool) == 1


async def test_exact_expected_version(store: EventStore, pool: AsyncConnectionPool[Any]) -> None:
    await store.append("s", [ev(), ev()])  # versions 0, 1
    [third] = await store.append("s", [ev()], expected_version=1)
    assert third.version == 2

    for wrong in (0, 1, 3, 7):
        with pytest.raises(WrongExpectedVersion) as info:
            await store.append("s", [ev()], expected_version=wrong)
        assert info.value.actual == 2
        assert f"expected version {wrong}, actual version 2" in str(info.value)
    assert await count_events(pool) == 3
    # A version on a stream that does not exist is a conflict too.
    with pytest.raises(WrongExpectedVersion):
        await store.append("missing", [ev()], expected_version=0)


async def test_any_appends_whatever_the_version(store: EventStore) -> None:
    await store.append("s", [ev()], expected_version=ANY)
    await store.append("s", [ev(), ev()], expected_version=ANY)
    assert [e.version for e in await store.read_stream("s")] == [0, 1, 2]


async def test_invalid_expected_version_is_refused(store: EventStore) -> None:
    for bad in (-2, "latest", True):
        with pytest.raises(ValueError):
            await store.append("s", [ev()], expected_version=bad)  # type: ignore[arg-type]


async def test_empty_append_checks_the_version_and_writes_nothing(store: EventStore) -> None:
    assert await store.append("s", [], expected_version=NO_STREAM) == []
    with pytest.raises(WrongExpectedVersion):
        await store.append("s", [], expected_version=0)


async def test_two_writers_with_the_same_expected_version_one_wins(store: EventStore, core_db: str) -> None:
    await store.append("s", [ev()])  # version 0
    async with (
        await psycopg.AsyncConnection.connect(core_db) as a,
        await psycopg.AsyncConnection.connect(core_db) as b,
    ):
        await store.append("s", [ev(writer="a")], expected_version=0, conn=a)
        # b runs truly concurrently: it waits on a's uncommitted write to the stream.
        b_append = asyncio.create_task(store.append("s", [ev(writer="b")], expected_version=0, conn=b))
        await wait_until_blocked(core_db, waiting=b.info.backend_pid, holder=a.info.backend_pid)
        assert not b_append.done()
        await a.commit()
        with pytest.raises(WrongExpectedVersion):
            await b_append
        await b.rollback()
    assert [e.data["writer"] for e in await store.read_stream("s", from_version=1)] == ["a"]


async def test_many_concurrent_writers_with_one_expected_version_exactly_one_wins(store: EventStore) -> None:
    await store.append("s", [ev()])
    results = await asyncio.gather(
        *(store.append("s", [ev(writer=i)], expected_version=0) for i in range(12)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, list)]
    assert len(winners) == 1
    assert all(isinstance(r, WrongExpectedVersion) for r in results if not isinstance(r, list))
    assert await store.stream_version("s") == 1


async def test_concurrent_any_appends_all_succeed(store: EventStore) -> None:
    results = await asyncio.gather(*(store.append("s", [ev(n=i)]) for i in range(20)))
    assert sorted(r[0].version for r in results) == list(range(20))
    events = await store.read_stream("s")
    assert [e.version for e in events] == list(range(20))
    assert sorted(e.data["n"] for e in events) == list(range(20))


async def test_concurrent_any_appends_in_callers_transactions_all_succeed(
    store: EventStore, core_db: str
) -> None:
    async def one(i: int) -> None:
        async with await psycopg.AsyncConnection.connect(core_db) as conn:
            await store.append("s", [ev(n=i)], conn=conn)
            await asyncio.sleep(0.01)  # hold the transaction open a little
            await conn.commit()

    await asyncio.gather(*(one(i) for i in range(10)))
    assert [e.version for e in await store.read_stream("s")] == list(range(10))


async def test_append_on_callers_connection_commits_with_its_other_writes(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE side (x int)")
        await conn.execute("INSERT INTO side VALUES (1)")
        await store.append("s", [ev()], expected_version=NO_STREAM, conn=conn)
        # Not visible elsewhere before the caller commits: the store did not commit.
        assert await store.stream_version("s") == -1
    # pool.connection() committed on exit: both writes are there.
    assert await store.stream_version("s") == 0
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM side")).fetchone() == (1,)


async def test_append_on_callers_connection_rolls_back_with_it(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE side (x int)")
    with pytest.raises(RuntimeError):
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO side VALUES (1)")
            await store.append("s", [ev()], conn=conn)
            raise RuntimeError("the command failed later")
    assert await store.stream_version("s") == -1
    assert await count_events(pool) == 0
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM side")).fetchone() == (0,)


async def test_conflict_in_callers_transaction_writes_nothing(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    await store.append("s", [ev()])
    async with pool.connection() as conn:
        with pytest.raises(WrongExpectedVersion):
            await store.append("s", [ev(), ev()], expected_version=NO_STREAM, conn=conn)
        await conn.rollback()
    assert await count_events(pool) == 1


async def test_append_on_an_autocommit_connection(store: EventStore, core_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(core_db, autocommit=True) as conn:
        await store.append("s", [ev(), ev()], conn=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert await store.stream_version("s") == 1


# Metadata and data ----------------------------------------------------------------------------------


async def test_writes_give_pool_connections_back_as_the_pool_gave_them(
    store: EventStore, core_db: str
) -> None:
    """A write takes its pool connection with getconn and switches it to autocommit: it must come back
    in transaction mode, after a write that failed too, and one cancelled in mid-statement must not
    be served again."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(core_db, min_size=1, max_size=1, open=False)
    await pool.open(wait=True)
    try:
        one = EventStore(pool)
        [first] = await one.append("s", [ev(n=1)])
        with pytest.raises(WrongExpectedVersion):
            await one.append("s", [ev(n=2)], expected_version=NO_STREAM)
        with pytest.raises(EventDuplicated):
            await one.append("t", [NewEvent("Happened", {}, event_id=first.event_id)])
        async with pool.connection() as conn:
            assert not conn.autocommit
            await conn.execute(
                "INSERT INTO event_store_snapshots (stream, version, state) VALUES ('x', 0, '{}')"
            )
            await conn.rollback()
            assert (await (await conn.execute("SELECT count(*) FROM event_store_snapshots")).fetchone()) == (
                0,
            )
        # Cancelled while it waits for the stream's lock: its connection is closed, a new one serves.
        async with await psycopg.AsyncConnection.connect(core_db) as holder:
            await store.lock_stream("s", conn=holder)
            blocked = asyncio.create_task(one.append("s", [ev(n=3)]))
            await asyncio.sleep(0.3)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            await holder.rollback()
        [after] = await one.append("s", [ev(n=4)])
        assert after.version == 1
        assert [e.data["n"] for e in await one.read_stream("s")] == [1, 4]
    finally:
        await pool.close()


async def test_writes_keep_one_cursor_per_live_pool_connection(core_db: str, pg_server: str) -> None:
    """Writes reuse a cursor per pool connection: after the pool replaced a connection its server
    ended, appends run on the new one, and the old connection (with its cursor) is let go."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        core_db, min_size=1, max_size=1, open=False, check=check_connection
    )
    await pool.open(wait=True)
    try:
        store = EventStore(pool)
        await store.append("s", [ev(n=1)])
        await store.append("s", [ev(n=2)])
        async with pool.connection() as conn:
            old = conn.info.backend_pid
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (old,))
        await asyncio.sleep(0.2)  # the server's error reaches the socket: the pool's check sees it
        [third] = await store.append("s", [ev(n=3)])
        assert third.version == 2
        assert [e.data["n"] for e in await store.read_stream("s")] == [1, 2, 3]
        kept = list(store._cursors._by_conn)
        assert len(kept) == 1 and not kept[0].closed and kept[0].info.backend_pid != old
    finally:
        await pool.close()


async def test_append_refuses_values_json_cannot_hold(store: EventStore) -> None:
    """A float that is not finite has no JSON form: the append fails and writes nothing (the encoder
    must not turn it into null, as orjson would), while nulls and values with null in their text stay."""
    for bad in ({"x": float("nan")}, {"x": [None, float("inf")]}):
        with pytest.raises(psycopg.DataError):
            await store.append("s", [NewEvent("Happened", bad)])
        with pytest.raises(psycopg.DataError):
            await store.append("s", [NewEvent("Happened", {}), NewEvent("Happened", bad)])
    assert await store.stream_version("s") == -1
    good = {"nullable": None, "s": "a:null", "n": [None, 1.5, 2**70], "at": datetime(2026, 1, 2, tzinfo=UTC)}
    [event] = await store.append("s", [NewEvent("Happened", good, metadata={"note": None})])
    expected = {**good, "at": "2026-01-02T00:00:00+00:00"}
    assert event.data == expected and (await store.get(event.event_id)).data == expected
    assert event.metadata["note"] is None


async def test_metadata_defaults_and_free_keys(store: EventStore) -> None:
    before = datetime.now(UTC)
    [first] = await store.append("s", [NewEvent("A", {}, metadata={"request_id": "r1", "actor": "alice"})])
    stored = await store.get(first.event_id)
    assert stored.metadata["correlation_id"] == str(first.event_id)
    assert stored.metadata["causation_id"] == str(first.event_id)
    assert stored.metadata["request_id"] == "r1" and stored.metadata["actor"] == "alice"
    stamp = datetime.fromisoformat(stored.metadata["timestamp"])
    assert stamp.utcoffset() == timedelta(0) and before <= stamp <= datetime.now(UTC)

    meta = {"correlation_id": "c1"}
    [second] = await store.append("s", [NewEvent("B", {}, metadata=meta)])
    assert second.metadata["causation_id"] == "c1"
    meta2 = {"correlation_id": "c1", "causation_id": str(second.event_id)}
    [third] = await store.append("s", [NewEvent("C", {}, metadata=meta2)])
    assert (await store.get(third.event_id)).metadata["causation_id"] == str(second.event_id)


async def test_uuids_and_datetimes_in_data_serialize(store: EventStore) -> None:
    table_id, moment = uuid4(), datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    valid = datetime(2024, 1, 1, tzinfo=UTC)
    [recorded] = await store.append("s", [NewEvent("A", {"id": table_id, "at": moment}, valid_at=valid)])
    stored = await store.get(recorded.event_id)
    assert stored.data == {"id": str(table_id), "at": "2024-05-01T12:00:00+00:00"}
    assert recorded.data == stored.data
    assert stored.valid_at == valid
    assert stored.created_at == recorded.created_at


async def test_get_unknown_event_raises(store: EventStore) -> None:
    missing = uuid4()
    with pytest.raises(EventNotFound) as info:
        await store.get(missing)
    assert info.value.event_id == missing


# Linking --------------------------------------------------------------------------------------------


async def test_link_adds_events_to_another_stream(store: EventStore) -> None:
    a = await store.append("a", [ev(n=1), ev(n=2)])
    [b] = await store.append("b", [ev(n=3)])
    await store.link("all-n", [a[1].event_id, b.event_id], expected_version=NO_STREAM)
    linked = await store.read_stream("all-n")
    assert [(e.data["n"], e.stream, e.version) for e in linked] == [(2, "all-n", 0), (3, "all-n", 1)]
    assert linked[0].position == a[1].position
    assert await store.streams_of(a[1].event_id) == ["a", "all-n"]
    assert await store.streams_of(a[0].event_id) == ["a"]
    # The event keeps its place in its own stream.
    assert [e.version for e in await store.read_stream("a")] == [0, 1]


async def test_link_conflicts_write_nothing(store: EventStore) -> None:
    [x, y] = await store.append("a", [ev(), ev()])
    await store.link("l", [x.event_id])
    with pytest.raises(WrongExpectedVersion) as info:
        await store.link("l", [y.event_id], expected_version=NO_STREAM)
    assert info.value.actual == 0
    with pytest.raises(EventDuplicated):
        await store.link("l", [y.event_id, x.event_id])
    with pytest.raises(EventNotFound):
        await store.link("l", [y.event_id, uuid4()])
    assert [e.event_id for e in await store.read_stream("l")] == [x.event_id]
    await store.link("l", [y.event_id], expected_version=0)
    assert await store.stream_version("l") == 1


# Reading --------------------------------------------------------------------------------------------


async def test_read_stream_options(store: EventStore) -> None:
    await store.append("s", [ev(n=i) for i in range(6)])
    await store.append("other", [ev(n=99)])

    def ns(events: list[RecordedEvent]) -> list[int]:
        return [e.data["n"] for e in events]

    assert ns(await store.read_stream("s")) == [0, 1, 2, 3, 4, 5]
    assert ns(await store.read_stream("s", backward=True)) == [5, 4, 3, 2, 1, 0]
    assert ns(await store.read_stream("s", from_version=2, to_version=4)) == [2, 3, 4]
    assert ns(await store.read_stream("s", from_version=2, to_version=4, backward=True)) == [4, 3, 2]
    assert ns(await store.read_stream("s", from_version=3, limit=2)) == [3, 4]
    assert ns(await store.read_stream("s", backward=True, limit=1)) == [5]
    assert await store.read_stream("nothing") == []


async def test_read_stream_until(store: EventStore) -> None:
    first = await store.append("s", [ev(n=0), ev(n=1)])
    await asyncio.sleep(0.01)
    await store.append("s", [ev(n=2)])
    until = first[1].created_at
    assert [e.data["n"] for e in await store.read_stream("s", until=until)] == [0, 1]
    last = await store.read_stream("s", until=until, backward=True, limit=1)
    assert last[0].version == 1


async def test_read_stream_until_takes_whole_transactions(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    [before] = await store.append("s", [ev(n=0)])
    async with pool.connection() as conn, conn.transaction():
        [first] = await store.append("s", [ev(n=1)], conn=conn)
        await conn.execute("SELECT pg_sleep(0.01)")
        [_, last] = await store.append("s", [ev(n=2), ev(n=3)], conn=conn)
    await store.append("s", [ev(n=4)])
    assert before.created_at < first.created_at < last.created_at

    def ns(events: list[RecordedEvent]) -> list[int]:
        return [e.data["n"] for e in events]

    # Any moment from the transaction's first event on sees all of its events, never a part of them.
    for moment in (first.created_at, first.created_at + (last.created_at - first.created_at) / 2):
        assert ns(await store.read_stream("s", until=moment)) == [0, 1, 2, 3]
        assert ns(await store.read_stream("s", until=moment, backward=True)) == [3, 2, 1, 0]
        [head] = await store.read_stream("s", until=moment, backward=True, limit=1)
        assert head.version == 3
        assert ns(await store.read_stream("s", from_version=2, until=moment)) == [2, 3]
        assert ns(await store.read_stream("s", to_version=1, until=moment)) == [0, 1]
    # Before it, none of them.
    for moment in (before.created_at, first.created_at - timedelta(microseconds=1)):
        assert ns(await store.read_stream("s", until=moment)) == [0]
        assert ns(await store.read_stream("s", until=moment, backward=True, limit=1)) == [0]
    assert await store.read_stream("s", until=before.created_at - timedelta(microseconds=1)) == []


async def test_read_stream_until_takes_whole_linking_transactions(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    # Events of two transactions, linked to a stream by a third: the link is what the cut follows.
    [x] = await store.append("a", [ev(n=1)])
    [y] = await store.append("b", [ev(n=2)])
    async with pool.connection() as conn, conn.transaction():
        await store.link("l", [x.event_id], conn=conn)
        await conn.execute("SELECT pg_sleep(0.01)")
        await store.link("l", [y.event_id], conn=conn)
        cur = await conn.execute(
            "SELECT created_at FROM event_store_events_in_streams WHERE stream = 'l' ORDER BY version"
        )
        first, second = [r[0] for r in await cur.fetchall()]
    assert first < second
    assert [e.data["n"] for e in await store.read_stream("l", until=first)] == [1, 2]
    assert await store.read_stream("l", until=first - timedelta(microseconds=1)) == []


async def test_read_all_options(store: EventStore) -> None:
    a = await store.append("a", [NewEvent("A", {"n": 0}, metadata={"correlation_id": "c1"})])
    await asyncio.sleep(0.01)
    b = await store.append("b", [NewEvent("B", {"n": 1}, metadata={"correlation_id": "c1"}), ev("A", n=2)])
    await asyncio.sleep(0.01)
    c = await store.append("a", [ev("C", n=3)])
    every = a + b + c
    positions = [e.position for e in every]

    def ns(events: list[RecordedEvent]) -> list[int]:
        return [e.data["n"] for e in events]

    assert ns(await store.read_all()) == [0, 1, 2, 3]
    assert all(e.stream is None and e.version is None for e in await store.read_all())
    assert ns(await store.read_all(backward=True)) == [3, 2, 1, 0]
    assert ns(await store.read_all(after_position=positions[0])) == [1, 2, 3]
    assert ns(await store.read_all(after_position=positions[0], to_position=positions[2])) == [1, 2]
    assert ns(await store.read_all(to_position=positions[2], backward=True, limit=2)) == [2, 1]
    assert ns(await store.read_all(limit=2)) == [0, 1]
    assert ns(await store.read_all(event_types=["A"])) == [0, 2]
    assert ns(await store.read_all(event_types=["A", "C"], backward=True)) == [3, 2, 0]
    assert ns(await store.read_all(newer_than=a[0].created_at)) == [1, 2, 3]
    assert ns(await store.read_all(older_than=c[0].created_at)) == [0, 1, 2]
    assert ns(await store.read_all(newer_than=a[0].created_at, older_than=c[0].created_at)) == [1, 2]
    assert ns(await store.read_all(correlation_id="c1")) == [0, 1]
    in_a = await store.read_all(stream="a")
    assert [(e.data["n"], e.stream, e.version) for e in in_a] == [(0, "a", 0), (3, "a", 1)]
    assert ns(await store.read_all(stream="a", event_types=["C"])) == [3]


async def test_read_batches_pages_by_position(store: EventStore) -> None:
    await store.append("s", [ev(n=i) for i in range(25)])
    await store.append("t", [ev("Other", n=100)])

    batches = [b async for b in store.read_batches(batch_size=10, event_types=["Happened"])]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [e.data["n"] for b in batches for e in b] == list(range(25))

    backward = [b async for b in store.read_batches(batch_size=10, backward=True)]
    assert [len(b) for b in backward] == [10, 10, 6]
    assert [e.data["n"] for b in backward for e in b] == [100, *range(24, -1, -1)]

    exact = [b async for b in store.read_batches(batch_size=13, stream="s")]
    assert [len(b) for b in exact] == [13, 12]
    assert [b async for b in store.read_batches(after_position=10_000)] == []


async def test_read_batches_resume_after_the_last_position_not_by_offset(store: EventStore) -> None:
    await store.append("s", [ev(n=i) for i in range(4)])
    seen: list[int] = []
    async for batch in store.read_batches(batch_size=2, backward=True):
        seen += [e.data["n"] for e in batch]
        if len(seen) == 2:
            # A newer event appended while paging backward: an OFFSET would shift the pages and repeat
            # event 2; the keyset cursor (positions below the last one seen) does not.
            await store.append("s", [ev(n=4)])
    assert seen == [3, 2, 1, 0]


# Upcasting and snapshots ----------------------------------------------------------------------------


async def test_upcasting_through_two_versions(pool: AsyncConnectionPool[Any]) -> None:
    upcasters = Upcasters()
    upcasters.register("Renamed", 1, lambda d: {"full_name": d["name"]})
    upcasters.register("Renamed", 2, lambda d: {**d, "title": d["full_name"].upper()})
    store = EventStore(pool, upcasters=upcasters)

    [written] = await store.append("s", [NewEvent("Renamed", {"name": "ada"}, schema_version=1)])
    assert written.schema_version == 1  # stored as written
    [read] = await store.read_stream("s")
    assert (read.schema_version, read.data) == (3, {"full_name": "ada", "title": "ADA"})
    assert (await store.get(written.event_id)).data["title"] == "ADA"
    assert (await store.read_all())[0].schema_version == 3
    # A v2 payload takes only the second step; other types are untouched.
    await store.append("s", [NewEvent("Renamed", {"full_name": "bob"}, schema_version=2), ev(x=1)])
    _, second, other = await store.read_stream("s")
    assert (second.schema_version, second.data["title"]) == (3, "BOB")
    assert (other.schema_version, other.data) == (1, {"x": 1})
    with pytest.raises(ValueError):
        upcasters.register("Renamed", 1, lambda d: d)


async def test_snapshots(store: EventStore, pool: AsyncConnectionPool[Any]) -> None:
    assert await store.load_snapshot("s") is None
    await store.save_snapshot("s", 9, {"v": 9})
    await store.save_snapshot("s", 19, {"v": 19, "id": uuid4()})
    assert (await store.load_snapshot("s"))[0] == 19  # type: ignore[index]
    assert await store.load_snapshot("s", max_version=18) == (9, {"v": 9})
    assert await store.load_snapshot("s", max_version=8) is None
    await store.save_snapshot("s", 9, {"v": "nine"})  # saving a version again replaces it
    assert await store.load_snapshot("s", max_version=9) == (9, {"v": "nine"})
    async with pool.connection() as conn:
        await store.save_snapshot("s", 29, {"v": 29}, conn=conn)
        await conn.rollback()
    assert (await store.load_snapshot("s"))[0] == 19  # type: ignore[index]


# Following the global log ---------------------------------------------------------------------------


async def take(follower: AsyncIterator[RecordedEvent], n: int, timeout: float = 5.0) -> list[RecordedEvent]:
    return [await asyncio.wait_for(anext(follower), timeout) for _ in range(n)]


async def test_follow_yields_every_event_and_resumes_from_a_checkpoint(store: EventStore) -> None:
    await store.append("a", [ev(n=0), ev(n=1)])
    await store.append("b", [ev(n=2)])
    follower = store.follow(poll_interval=0.02)
    first = await take(follower, 3)
    assert [e.data["n"] for e in first] == [0, 1, 2]
    # Each followed event says which stream it was appended to, and its version there (events tail
    # printed "stream": null, "version": null for every one).
    assert [(e.stream, e.version) for e in first] == [("a", 0), ("a", 1), ("b", 0)]
    [third] = await store.append("a", [ev(n=3)])
    await store.link("all", [third.event_id])  # a link later does not change where it was appended
    assert [(e.data["n"], e.stream, e.version) for e in await take(follower, 1)] == [(3, "a", 2)]
    await follower.aclose()

    resumed = store.follow(after=first[-1].checkpoint, poll_interval=0.02)
    assert [e.data["n"] for e in await take(resumed, 1)] == [3]
    await resumed.aclose()
    assert await store.current_checkpoint() != Checkpoint(0, 0)


async def test_follow_never_skips_an_event_committed_after_a_later_one(
    store: EventStore, core_db: str
) -> None:
    """Transaction A gets the lower position but commits after B: a follower that has seen B must still
    see A, so it may not yield B before A commits."""
    follower = store.follow(poll_interval=0.02)
    await store.append("warmup", [ev(n=0)])
    assert [e.data["n"] for e in await take(follower, 1)] == [0]

    async with (
        await psycopg.AsyncConnection.connect(core_db) as tx_a,
        await psycopg.AsyncConnection.connect(core_db) as tx_b,
    ):
        [a] = await store.append("a", [ev(n=1)], conn=tx_a)
        [b] = await store.append("b", [ev(n=2)], conn=tx_b)
        assert a.position < b.position
        await tx_b.commit()
        assert [e.data["n"] for e in await store.read_all(after_position=1)] == [2]  # B is visible

        pending = asyncio.ensure_future(anext(follower))
        await asyncio.sleep(0.3)  # many polls
        assert not pending.done(), "the follower yielded B while A, older, was still running"

        await tx_a.commit()
        got = [await asyncio.wait_for(pending, 5), *(await take(follower, 1))]
    assert [e.event_id for e in got] == [a.event_id, b.event_id]
    await follower.aclose()


async def test_follow_is_not_held_back_by_transactions_of_other_databases(
    store: EventStore, pg_server: str
) -> None:
    """pg_snapshot_xmin counts the whole cluster; the follower's horizon ignores other databases."""
    async with await psycopg.AsyncConnection.connect(pg_server) as elsewhere:
        await elsewhere.execute("SELECT pg_current_xact_id()")  # holds an xid, older than the append
        [recorded] = await store.append("s", [ev()])
        follower = store.follow(poll_interval=0.02)
        assert [e.event_id for e in await take(follower, 1)] == [recorded.event_id]
        await follower.aclose()
        await elsewhere.rollback()


async def test_follow_in_position_order_would_have_skipped(store: EventStore, core_db: str) -> None:
    """The same interleaving read by position: proof that the test above exercises a real hazard."""
    async with (
        await psycopg.AsyncConnection.connect(core_db) as tx_a,
        await psycopg.AsyncConnection.connect(core_db) as tx_b,
    ):
        [a] = await store.append("a", [ev(n=1)], conn=tx_a)
        await store.append("b", [ev(n=2)], conn=tx_b)
        await tx_b.commit()
        seen = await store.read_all()
        await tx_a.commit()
    resumed = await store.read_all(after_position=seen[-1].position)
    assert a.event_id not in {e.event_id for e in seen + resumed}


async def test_only_followed_events_carry_a_checkpoint(store: EventStore) -> None:
    [recorded] = await store.append("s", [ev()])
    with pytest.raises(EventStoreError):
        _ = recorded.checkpoint


async def test_follow_refuses_events_copied_from_another_cluster(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    [recorded] = await store.append("s", [ev()])
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE event_store_events SET tx_id = '99999999999'::xid8 WHERE event_id = %s",
            (recorded.event_id,),
        )
    with pytest.raises(EventStoreError, match="another cluster"):
        await anext(store.follow())


def test_the_constraints_that_conflicts_are_recognised_by_exist(core_db: str) -> None:
    # The store turns unique violations into WrongExpectedVersion / EventDuplicated by constraint name.
    from schemasaga.eventstore import store as store_module

    names = {
        store_module._STREAM_VERSION_KEY,
        store_module._EVENT_ID_KEY,
        store_module._STREAM_EVENT_KEY,
    }
    with psycopg.connect(core_db) as conn:
        found = {
            r[0]
            for r in conn.execute("SELECT conname FROM pg_constraint WHERE conname = ANY(%s)", (list(names),))
        }
    assert found == names
