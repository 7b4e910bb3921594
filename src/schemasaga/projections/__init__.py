"""Read models, updated in the same transaction as the append and rebuildable from the events."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from schemasaga.databases import projection as databases
from schemasaga.eventstore import EventStore
from schemasaga.projections import tables


async def rebuild_all(conn: AsyncConnection[Any], store: EventStore) -> dict[str, int]:
    """Rebuild every read model from the events, inside the caller's transaction; the streams read."""
    return {
        "databases": await databases.rebuild(conn, store),
        "tables": await tables.rebuild(conn, store),
    }
