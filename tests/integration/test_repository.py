"""The Table repository on a real event store: snapshots give the same state as replaying every event,
and a table loads as it was at any version or moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb.transaction import PgStreams, PgTransaction
from schemasaga.coredb.views import PgReadModels
from schemasaga.domain.columns import Column, ColumnType
from schemasaga.domain.errors import TableNotFound
from schemasaga.domain.events import event_from_data, stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import EventStore, RecordedEvent
from schemasaga.services.repository import load_table, save_table


class TableRepository:
    """The unit of work's loads and saves of a table (services.repository), on the real event store."""

    def __init__(self, store: EventStore, pool: AsyncConnectionPool[Any], *, snapshot_every: int) -> None:
        self.store = store
        self.snapshot_every = snapshot_every
        self.reads = PgReadModels(pool, store=store)

    async def save(self, table: Table, *, conn: Any) -> list[RecordedEvent]:
        # A save defers no job: the transaction needs no scheduler.
        tx = PgTransaction(conn, store=self.store, scheduler=None)  # type: ignore[arg-type]
        return await save_table(tx, table, metadata={}, snapshot_every=self.snapshot_every)

    async def load(
        self, table_id: UUID, *, at_version: int | None = None, at_time: datetime | None = None
    ) -> Table:
        if at_time is not None:
            return await self.reads.table_at(table_id, version=at_version, moment=at_time)
        table = await load_table(PgStreams(self.store), table_id, to_version=at_version)
        if table is None:
            raise TableNotFound(str(table_id))
        return table


async def save(repo: TableRepository, pool: AsyncConnectionPool[Any], table: Table) -> None:
    async with pool.connection() as conn, conn.transaction():
        await repo.save(table, conn=conn)


async def replay(store: EventStore, table_id: UUID, *, upto: int | None = None) -> Table:
    """The table folded from its events alone, no snapshot."""
    table = Table(table_id=table_id)
    for rec in await store.read_stream(stream_name(table_id), to_version=upto):
        table.apply(event_from_data(rec.event_type, rec.data))
    return table


async def history(repo: TableRepository, pool: AsyncConnectionPool[Any]) -> tuple[UUID, list[datetime]]:
    """A table with 25 events saved one command at a time; the moment after each save."""
    table = Table.create(table_id=uuid4(), name="long", database="default", operation_id=uuid4())
    await save(repo, pool, table)
    table.complete_step(table.pending[0].operation_id, "create_table")
    table.confirm(table.pending[0].operation_id)
    await save(repo, pool, table)
    moments = []
    for i in range(11):
        op = uuid4()
        table.add_column(Column(f"c{i}", ColumnType.TEXT), operation_id=op)
        await save(repo, pool, table)
        if i % 3:
            table.confirm(op)
        else:
            table.reject(op, reason="no")
        await save(repo, pool, table)
        moments.append(datetime.now(UTC))
        await asyncio.sleep(0.002)
    return table.table_id, moments


async def test_loading_from_snapshots_equals_replaying_every_event(
    store: EventStore, pool: AsyncConnectionPool[Any]
) -> None:
    repo = TableRepository(store, pool, snapshot_every=4)
    table_id, _ = await history(repo, pool)
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT version FROM event_store_snapshots WHERE stream = %s ORDER BY version",
                (stream_name(table_id),),
            )
        ).fetchall()
    assert [r[0] for r in rows] == [3, 7, 11, 15, 19, 23]
    last = await store.stream_version(stream_name(table_id))
    for version in range(last + 1):
        loaded = await repo.load(table_id, at_version=version)
        assert loaded.state_equals(await replay(store, table_id, upto=version)), version
    assert (await repo.load(table_id)).state_equals(await replay(store, table_id))


async def test_a_wrong_snapshot_would_show(store: EventStore, pool: AsyncConnectionPool[Any]) -> None:
    # Guards the test above: loading really starts from the snapshot.
    repo = TableRepository(store, pool, snapshot_every=4)
    table_id, _ = await history(repo, pool)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE event_store_snapshots SET state = jsonb_set(state, '{database}', '\"tampered\"') "
            "WHERE stream = %s",
            (stream_name(table_id),),
        )
    assert (await repo.load(table_id)).database == "tampered"


async def test_a_table_loads_as_it_was_at_a_moment(store: EventStore, pool: AsyncConnectionPool[Any]) -> None:
    repo = TableRepository(store, pool, snapshot_every=4)
    table_id, moments = await history(repo, pool)
    for i, moment in enumerate(moments):
        then = await repo.load(table_id, at_time=moment)
        # After the i-th round, columns c0..ci were decided; the rejected ones (every third) are absent.
        expected = {f"c{k}" for k in range(i + 1) if k % 3}
        assert {n for n in then.columns if n.startswith("c") and n != "created_at"} == expected, i
        assert then.synced
    with pytest.raises(TableNotFound):
        await repo.load(table_id, at_time=datetime(2000, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("snapshot_every", [2, 100])
async def test_a_moment_inside_a_transaction_loads_the_whole_transaction(
    store: EventStore, pool: AsyncConnectionPool[Any], snapshot_every: int
) -> None:
    repo = TableRepository(store, pool, snapshot_every=snapshot_every)
    op = uuid4()
    table = Table.create(table_id=uuid4(), name="atomic", database="default", operation_id=op)
    await save(repo, pool, table)
    # The step and the confirmation in one transaction, in two appends; with snapshot_every=2 a
    # snapshot is taken between them, at version 1.
    async with pool.connection() as conn, conn.transaction():
        table.complete_step(op, "create_table")
        [step] = await repo.save(table, conn=conn)
        await conn.execute("SELECT pg_sleep(0.01)")
        table.confirm(op)
        [confirmed] = await repo.save(table, conn=conn)
    assert (await store.load_snapshot(stream_name(table.table_id)) is not None) == (snapshot_every == 2)
    assert step.created_at < confirmed.created_at

    for moment in (step.created_at, step.created_at + (confirmed.created_at - step.created_at) / 2):
        then = await repo.load(table.table_id, at_time=moment)
        assert (then.version, then.synced, then.exists) == (2, True, True), moment
    before = await repo.load(table.table_id, at_time=step.created_at - timedelta(microseconds=1))
    assert (before.version, before.synced, before.exists) == (0, False, False)
