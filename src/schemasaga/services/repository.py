"""Loading and saving the event-sourced aggregates (tables, registered databases) in a core transaction:
their streams, snapshots, and the events they decided turned into events to append."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol
from uuid import UUID

from schemasaga.domain import database as db
from schemasaga.domain.events import event_from_data, stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import NO_STREAM, NewEvent, RecordedEvent
from schemasaga.services.ports import CoreTransaction, StreamReader


async def load_tables(tx: StreamReader, table_ids: Sequence[UUID]) -> dict[UUID, Table]:
    """Many tables as they are now, with two reads in all (their newest snapshots, then their events
    since): what :func:`load_table` gives each; a table with no events is left out."""
    streams = {stream_name(t): t for t in table_ids}
    snapshots = await tx.latest_snapshots(list(streams))
    tables: dict[UUID, Table] = {}
    for stream, table_id in streams.items():
        if stream in snapshots:
            version, state = snapshots[stream]
            tables[table_id] = Table.from_snapshot(state, version=version)
        else:
            tables[table_id] = Table(table_id=table_id)
    events = await tx.read_streams_from({s: tables[t].version + 1 for s, t in streams.items()})
    for recorded in events:
        assert recorded.stream is not None
        tables[streams[recorded.stream]].apply(event_from_data(recorded.event_type, recorded.data))
    for table in tables.values():
        table.trash_changed.clear()  # projected when they were appended
    return {t: table for t, table in tables.items() if table.version >= 0}


async def load_table(tx: StreamReader, table_id: UUID, *, to_version: int | None = None) -> Table | None:
    """The table as it is now, or as it was at stream version ``to_version``; ``None`` if it has no events
    (by then). A snapshot at or below ``to_version`` is where the replay starts."""
    stream = stream_name(table_id)
    snapshot = await tx.load_snapshot(stream, max_version=to_version)
    # A snapshot taken before tables remembered their completed operations ("done", which undo needs) is
    # not used: the replay from the first event rebuilds them.
    if snapshot is not None and "done" in snapshot[1]:
        version, state = snapshot
        table = Table.from_snapshot(state, version=version)
    else:
        table = Table(table_id=table_id)
    for recorded in await tx.read_stream(stream, from_version=table.version + 1, to_version=to_version):
        table.apply(event_from_data(recorded.event_type, recorded.data))
    table.trash_changed.clear()  # projected when they were appended
    return table if table.version >= 0 else None


def fold_table(table_id: UUID, events: Sequence[RecordedEvent]) -> Table | None:
    """The table its stream's ``events`` (from version 0, in order) make; ``None`` without any."""
    table = Table(table_id=table_id)
    for recorded in events:
        table.apply(event_from_data(recorded.event_type, recorded.data))
    return table if table.version >= 0 else None


async def save_table(
    tx: CoreTransaction, table: Table, *, metadata: Mapping[str, Any], snapshot_every: int
) -> list[RecordedEvent]:
    """Append the table's new events, expecting no one else appended since it was loaded; a snapshot is
    saved each time the stream crosses a multiple of ``snapshot_every`` events."""
    if not table.changes:
        return []
    new = new_events(table.changes, metadata)
    expected = NO_STREAM if table.version < 0 else table.version
    recorded = await tx.append(stream_name(table.table_id), new, expected_version=expected)
    before = table.version
    table.version += len(table.changes)
    table.changes.clear()
    if (table.version + 1) // snapshot_every > (before + 1) // snapshot_every:
        await tx.save_snapshot(stream_name(table.table_id), table.version, table.to_snapshot())
    return recorded


async def load_database(tx: StreamReader, name: str) -> db.DatabaseState:
    events = await tx.read_stream(db.stream_name(name))
    return db.fold(name, ((db.event_from_data(e.event_type, e.data), e.created_at) for e in events))


async def save_database(
    tx: CoreTransaction,
    state: db.DatabaseState,
    events: Sequence[db.DatabaseEvent],
    metadata: Mapping[str, Any],
) -> None:
    """Append ``events`` to the database's stream (expecting its version unchanged) and fold them in."""
    recorded = await tx.append(
        db.stream_name(state.name), new_events(events, metadata), expected_version=state.version
    )
    for event, rec in zip(events, recorded, strict=True):
        state.apply(event, rec.created_at)


class Event(Protocol):
    """A domain event, as the event store records it."""

    SCHEMA_VERSION: ClassVar[int]

    def type_name(self) -> str: ...

    def to_data(self) -> dict[str, Any]: ...


def new_events(events: Sequence[Event], metadata: Mapping[str, Any]) -> list[NewEvent]:
    """Events to append, each with the command's metadata (who asked, the correlation id)."""
    return [
        NewEvent(
            event_type=e.type_name(),
            data=e.to_data(),
            metadata=dict(metadata),
            schema_version=e.SCHEMA_VERSION,
        )
        for e in events
    ]
