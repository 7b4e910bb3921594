"""The small size of ``bench.scale`` (``make bench-scale``): its server-side fill writes events the domain
accepts, which the online rebuild turns into the read models the bench measures."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.scale import HOT_EVENTS, fill, first_value, rebuild
from schemasaga.coredb.transaction import PgStreams
from schemasaga.domain.events import event_from_data, stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import EventStore
from schemasaga.services.repository import load_table


async def test_the_fill_makes_tables_the_rebuild_and_time_travel_accept(
    core_db: str, pool: AsyncConnectionPool[Any]
) -> None:
    written, _ = await asyncio.to_thread(fill, core_db, 12, 12 * 9, small=3, big=4)
    events, _ = await rebuild(core_db, 5)
    assert events == written == HOT_EVENTS - 1 + 11 * 9
    with psycopg.connect(core_db) as conn:
        rows = conn.execute(
            "SELECT database_name, count(*), min(version), max(version), bool_and(synced AND exists_) "
            "FROM rm_tables GROUP BY database_name ORDER BY database_name"
        ).fetchall()
        hot = conn.execute(
            "SELECT version, jsonb_array_length(columns) FROM rm_tables WHERE name = 't0'"
        ).fetchone()
        snapshots = conn.execute("SELECT count(*) FROM event_store_snapshots").fetchone()
        ops = conn.execute("SELECT count(*), bool_and(status = 'completed') FROM rm_operations").fetchone()
    # t0 (hot) and t8..t11 in bulk, t1..t3 in scale_small, t4..t7 in scale_big; 3 changes each but t0.
    assert rows == [
        ("bulk", 5, 8, HOT_EVENTS - 2, True),
        ("scale_big", 4, 8, 8, True),
        ("scale_small", 3, 8, 8, True),
    ]
    assert hot == (HOT_EVENTS - 2, 4 + (HOT_EVENTS - 3) // 3)
    assert snapshots == ((HOT_EVENTS - 1) // 50,)  # the hot table's, as the service saves them
    # Time travel from a snapshot (at version 499) gives the table the events alone give.
    store = EventStore(pool)
    (hot_id,) = [r for r in [await first_value(core_db, "SELECT table_id FROM rm_tables WHERE name = 't0'")]]
    from_snapshot = await load_table(PgStreams(store), hot_id, to_version=500)
    folded = Table(table_id=hot_id)
    for rec in await store.read_stream(stream_name(hot_id), to_version=500):
        folded.apply(event_from_data(rec.event_type, rec.data))
    assert from_snapshot is not None and from_snapshot.state_equals(folded)
    assert ops == (11 * 3 + 1 + (HOT_EVENTS - 3) // 3, True)
