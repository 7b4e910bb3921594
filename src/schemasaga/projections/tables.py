"""The ``rm_tables`` and ``rm_operations`` read models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from schemasaga.domain.events import (
    SagaAttemptFailed,
    SagaCompensationStarted,
    SagaStepCompleted,
    TableChangeConfirmed,
    TableChanged,
    TableChangeRejected,
    TableCreated,
    TableCreationConfirmed,
    TableCreationRejected,
    TableDeleted,
    TableDeletionConfirmed,
    TableDeletionRejected,
    TableEvent,
    TableReconciliationRequested,
    TableSchemaAdopted,
    event_from_data,
)
from schemasaga.domain.table import Table
from schemasaga.eventstore import EventStore, RecordedEvent
from schemasaga.sql import queries

Q = queries("projections")


def _kind(event: TableEvent) -> str:
    match event:
        case TableCreated():
            return "create_table"
        case TableChanged(action="add"):
            return "add_column"
        case TableChanged():
            return "remove_column"
        case TableReconciliationRequested(strategy=strategy):
            return strategy
        case _:
            return "delete_table"


def _detail(event: TableEvent) -> dict[str, Any]:
    match event:
        case TableCreated(name=name, database=database):
            return {"name": name, "database": database}
        case TableChanged(column=column):
            return {"column": column}
        case _:
            return {}


async def project(conn: AsyncConnection[Any], table: Table, recorded: Sequence[RecordedEvent]) -> None:
    """Bring the read models up to date with ``table`` after ``recorded`` were appended for it."""
    if not recorded:
        return
    at = recorded[-1].created_at
    async with conn.cursor() as cur:
        await cur.execute(
            Q["upsert_table"],
            {
                "table_id": table.table_id,
                "database": table.database,
                "name": table.name,
                "synced": table.synced,
                "exists": table.exists,
                "deleted": not table.live,
                "holds_name": table.holds_name,
                "columns": Jsonb({name: c.to_dict() for name, c in table.columns.items()}),
                "version": table.version,
                "at": at,
            },
        )
        for rec in recorded:
            await _project_event(cur, event_from_data(rec.event_type, rec.data), rec)


async def _project_event(cur: Any, event: TableEvent, rec: RecordedEvent) -> None:
    op = {"operation_id": event.operation_id, "at": rec.created_at}
    match event:
        case TableCreated() | TableChanged() | TableDeleted() | TableReconciliationRequested():
            await cur.execute(
                Q["insert_operation"],
                {
                    **op,
                    "table_id": event.table_id,
                    "kind": _kind(event),
                    "detail": Jsonb(_detail(event)),
                    "seq": rec.position,
                },
            )
        case SagaStepCompleted(step=step):
            await cur.execute(Q["operation_step_done"], {**op, "step": step})
        case SagaAttemptFailed(attempt=attempt, error=error):
            await cur.execute(Q["operation_attempt_failed"], {**op, "attempt": attempt, "error": error})
        case SagaCompensationStarted(reason=reason):
            await cur.execute(Q["operation_compensating"], {**op, "reason": reason})
        case (
            TableCreationConfirmed()
            | TableChangeConfirmed()
            | TableDeletionConfirmed()
            | TableSchemaAdopted()
        ):
            await cur.execute(Q["operation_finished"], {**op, "status": "completed", "error": None})
        case (
            TableCreationRejected(reason=r) | TableChangeRejected(reason=r) | TableDeletionRejected(reason=r)
        ):
            await cur.execute(Q["operation_finished"], {**op, "status": "rejected", "error": r})


async def mark_running(conn: AsyncConnection[Any], *, operation_id: UUID) -> None:
    """Record that a worker picked the operation up (not an event: it says nothing about the schema)."""
    await conn.execute(Q["operation_running"], {"operation_id": operation_id})


async def rebuild(conn: AsyncConnection[Any], store: EventStore) -> int:
    """Rebuild both read models from the event store, inside the caller's transaction."""
    await conn.execute(Q["truncate_read_models"])
    streams = [r[0] for r in await (await conn.execute(Q["table_streams"])).fetchall()]
    for stream in streams:
        events = await store.read_stream(stream, conn=conn)
        if not events:
            continue
        table = Table(table_id=UUID(events[0].data["table_id"]))
        # Event by event, as they were projected when appended (the row's timestamps come from them).
        for rec in events:
            table.apply(event_from_data(rec.event_type, rec.data))
            await project(conn, table, [rec])
    return len(streams)
