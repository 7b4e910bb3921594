"""Loads and saves Table aggregates through the event store, with snapshots and time travel."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from schemasaga.domain.errors import TableNotFound
from schemasaga.domain.events import event_from_data, stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import NO_STREAM, EventStore, NewEvent, RecordedEvent


class TableRepository:
    def __init__(self, store: EventStore, *, snapshot_every: int) -> None:
        self.store = store
        self.snapshot_every = snapshot_every

    async def load(
        self,
        table_id: UUID,
        *,
        conn: AsyncConnection[Any] | None = None,
        at_version: int | None = None,
        at_time: datetime | None = None,
    ) -> Table:
        """The table as it is now, or as it was at a stream version or at a moment (with every event of
        a transaction or none of them: see EventStore.read_stream)."""
        stream = stream_name(table_id)
        if at_time is not None:
            last = await self.store.read_stream(stream, backward=True, limit=1, until=at_time, conn=conn)
            if not last:
                raise TableNotFound(f"table {table_id} did not exist at {at_time.isoformat()}")
            version = last[0].version
            assert version is not None  # stream reads carry versions
            at_version = version if at_version is None else min(at_version, version)
        # At a moment, at_version ends a transaction; a snapshot below it, even one saved inside that
        # transaction, is only where the replay up to it starts.
        snapshot = await self.store.load_snapshot(stream, max_version=at_version, conn=conn)
        if snapshot is not None:
            snap_version, state = snapshot
            table = Table.from_snapshot(state, version=snap_version)
            start = snap_version + 1
        else:
            table, start = Table(table_id=table_id), 0
        events = await self.store.read_stream(stream, from_version=start, to_version=at_version, conn=conn)
        for recorded in events:
            table.apply(event_from_data(recorded.event_type, recorded.data))
        if table.version < 0:
            raise TableNotFound(f"no table with id {table_id}")
        return table

    async def save(
        self,
        table: Table,
        *,
        conn: AsyncConnection[Any],
        metadata: dict[str, Any] | None = None,
    ) -> list[RecordedEvent]:
        """Append the table's new events, expecting no one else appended since it was loaded."""
        if not table.changes:
            return []
        new = [
            NewEvent(
                event_type=e.type_name(),
                data=e.to_data(),
                metadata=dict(metadata or {}),
                schema_version=e.SCHEMA_VERSION,
            )
            for e in table.changes
        ]
        expected = NO_STREAM if table.version < 0 else table.version
        recorded = await self.store.append(
            stream_name(table.table_id), new, expected_version=expected, conn=conn
        )
        before = table.version
        table.version += len(table.changes)
        table.changes.clear()
        if (table.version + 1) // self.snapshot_every > (before + 1) // self.snapshot_every:
            await self.store.save_snapshot(
                stream_name(table.table_id), table.version, table.to_snapshot(), conn=conn
            )
        return recorded
