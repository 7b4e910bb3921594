"""The ``rm_databases`` read model: one row per registered database, rebuildable from its events."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from schemasaga.databases.events import DatabaseState, event_from_data
from schemasaga.eventstore import EventStore, RecordedEvent
from schemasaga.sql import queries

Q = queries("databases")


def fold(name: str, events: list[RecordedEvent]) -> DatabaseState:
    state = DatabaseState(name=name)
    for recorded in events:
        state.apply(event_from_data(recorded.event_type, recorded.data), recorded.created_at)
    return state


async def project(conn: AsyncConnection[Any], state: DatabaseState) -> None:
    """Make the row of ``state.name`` match the state (no row once unregistered)."""
    if not state.registered:
        await conn.execute(Q["delete_database"], {"name": state.name})
        return
    await conn.execute(
        Q["upsert_database"],
        {
            "name": state.name,
            "engine": state.engine,
            "url_encrypted": state.url_encrypted,
            "key_id": state.key_id,
            "display": Jsonb(state.display),
            "source": state.source,
            "status": state.status,
            "server_version": state.server_version,
            "version": state.version,
            "created_at": state.created_at,
            "updated_at": state.updated_at,
            "identity": state.identity,
        },
    )


async def rebuild(conn: AsyncConnection[Any], store: EventStore) -> int:
    """Rebuild rm_databases from the ``Database$`` streams, inside the caller's transaction."""
    await conn.execute(Q["truncate_databases"])
    streams = [r[0] for r in await (await conn.execute(Q["database_streams"])).fetchall()]
    for stream in streams:
        events = await store.read_stream(stream, conn=conn)
        if events:
            await project(conn, fold(events[0].data["name"], events))
    return len(streams)
