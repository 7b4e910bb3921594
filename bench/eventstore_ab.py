"""Event append against raw inserts on two core databases at once, in interleaved slices: an A/B of two
schemas (say, one upgraded by an older checkout) with the same client code, on a machine too noisy for
separate runs. The writers, the pool (one connection per writer) and the warm-up are bench.eventstore's,
the reference for the append target; this bench only adds the second database.

Run: ``.venv/bin/python -m bench.eventstore_ab --a URL_A --b URL_B [--rounds 12] [--slice 0.5]``
``[--a-ids uuid4 | --b-ids uuid4] [--prefill N] [--a-sql FILE | --b-sql FILE]``

Both databases must exist and be upgraded already (``schemasaga db upgrade``, or ``upgrade()`` from the
checkout whose schema they stand for); each gets the raw table of bench.eventstore, dropped after. Per
round and writer count, four slices in turn: raw on A, append on A, raw on B, append on B; the counts
and times add up over the rounds, so the machine's noise falls on all four alike.

``--a-ids uuid4`` (or ``--b-ids``) makes that side append with random uuid4 event ids, as the client did
before event ids became time-ordered (NewEvent's default): an A/B of that client change on one schema
(swap the sides between runs: on a busy machine one side can come out ahead by itself).
``--a-sql FILE`` (or ``--b-sql``) makes that side's store run the queries of FILE (another checkout's
``src/schemasaga/sql/queries/eventstore.sql``): an A/B of a change to the schema and the append statements.
Each side's client and server CPU per operation (the bench's process, and its backends from /proc) is shown
as well, as bench.eventstore shows it (``cpu us/op``: client + server).
``--prefill N`` first gives each database N events (random uuid4 ids, 100 to a stream) and its raw table
N rows, as a store that has grown: the indexes then no longer fit in a few pages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import psycopg

from bench.eventstore import (
    PAYLOAD,
    RAW_TABLE,
    Writer,
    backend_pids,
    cpu_seconds,
    pool_pids,
    raw_writers,
    server_cpu_seconds,
    store_writers,
    timed,
    writer_pool,
)
from schemasaga.eventstore import EventStore
from schemasaga.sql import parse_queries

PREFILL = """
WITH e AS (
    INSERT INTO event_store_events (event_id, event_type, data, metadata)
    SELECT u, 'BenchFill', %(data)s::jsonb, jsonb_build_object('correlation_id', u::text)
    FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, %(n)s)) AS g
    RETURNING position, event_id
)
INSERT INTO event_store_events_in_streams (stream, version, event_id)
SELECT 'BenchFill$' || position / 100, (position %% 100)::integer, event_id FROM e"""
PREFILL_RAW = """
INSERT INTO bench_raw_events (event_id, event_type, data)
SELECT gen_random_uuid(), 'BenchFill', %(data)s::jsonb FROM generate_series(1, %(n)s)"""


async def side(
    conninfo: str, writers: int, tag: str, random_ids: bool = False, sql: str | None = None
) -> tuple[list[Writer], list[Writer], Any, dict[str, list[int]]]:
    """(raw writers, append writers, what to close, the backends of each) on one database:
    bench.eventstore's own writers and pool, so that both benches measure the same thing."""
    conns = [await psycopg.AsyncConnection.connect(conninfo, autocommit=True) for _ in range(writers)]
    pool = await writer_pool(conninfo, writers)
    store = EventStore(pool)
    if sql is not None:
        with open(sql, encoding="utf-8") as f:
            store._q = parse_queries(f.read())
    pids = {"raw": await backend_pids(conns), "ours": await pool_pids(pool, writers)}

    async def close() -> None:
        for conn in conns:
            await conn.close()
        await pool.close()

    return raw_writers(conns), store_writers(store, writers, tag, random_ids), close, pids


async def compare(
    urls: dict[str, str],
    writers: int,
    rounds: int,
    slice_seconds: float,
    random_ids: frozenset[str] = frozenset(),
    sql: dict[str, str | None] | None = None,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The rate of each side and kind, and its (client, server) CPU microseconds per operation."""
    sql = sql or {}
    sides = {
        name: await side(url, writers, name, name in random_ids, sql.get(name)) for name, url in urls.items()
    }
    counts = {f"{kind}_{name}": 0 for name in urls for kind in ("raw", "ours")}
    times = dict.fromkeys(counts, 0.0)
    cpu = {key: [0.0, 0.0] for key in counts}
    try:
        for raw, ours, _, _ in sides.values():  # warm-up: connections, prepared statements
            await timed(raw, 0.3)
            await timed(ours, 0.3)
        for _ in range(rounds):
            for name, (raw, ours, _, pids) in sides.items():
                for kind, ws in (("raw", raw), ("ours", ours)):
                    key = f"{kind}_{name}"
                    t, c, sc = time.perf_counter(), cpu_seconds(), server_cpu_seconds(pids[kind])
                    counts[key] += await timed(ws, slice_seconds)
                    times[key] += time.perf_counter() - t
                    cpu[key][0] += cpu_seconds() - c
                    cpu[key][1] += server_cpu_seconds(pids[kind]) - sc
    finally:
        for _, _, close, _ in sides.values():
            await close()
    rates = {key: counts[key] / times[key] for key in counts}
    per_op = {key: (cpu[key][0] / counts[key] * 1e6, cpu[key][1] / counts[key] * 1e6) for key in counts}
    return rates, per_op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--a", required=True, help="core database A (the baseline)")
    parser.add_argument("--b", required=True, help="core database B")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--slice", type=float, default=0.5, help="seconds per slice")
    parser.add_argument("--writers", default="1,4")
    parser.add_argument("--a-ids", choices=("default", "uuid4"), default="default", help="side A's event ids")
    parser.add_argument("--b-ids", choices=("default", "uuid4"), default="default", help="side B's event ids")
    parser.add_argument("--prefill", type=int, default=0, help="events (and raw rows) to add to each first")
    parser.add_argument("--a-sql", default=None, help="side A's eventstore.sql (another checkout's)")
    parser.add_argument("--b-sql", default=None, help="side B's eventstore.sql (another checkout's)")
    args = parser.parse_args()
    urls = {"a": args.a, "b": args.b}
    random_ids = frozenset(side for side, ids in (("a", args.a_ids), ("b", args.b_ids)) if ids == "uuid4")
    for url in urls.values():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(RAW_TABLE)
            if args.prefill:
                params = {"n": args.prefill, "data": json.dumps(PAYLOAD)}
                conn.execute(PREFILL, params)
                conn.execute(PREFILL_RAW, params)
                conn.execute(
                    "VACUUM ANALYZE event_store_events, event_store_events_in_streams, bench_raw_events"
                )
    sql = {"a": args.a_sql, "b": args.b_sql}
    print(
        "| writers | raw A | append A | A ratio | raw B | append B | B ratio | append B / A "
        "| cpu us/op raw A | append A | raw B | append B | load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    try:
        for writers in (int(w) for w in args.writers.split(",")):
            rates, per_op = asyncio.run(compare(urls, writers, args.rounds, args.slice, random_ids, sql))
            ra, oa, rb, ob = rates["raw_a"], rates["ours_a"], rates["raw_b"], rates["ours_b"]
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            cpu = " | ".join(
                f"{per_op[key][0]:.0f} + {per_op[key][1]:.0f}"
                for key in ("raw_a", "ours_a", "raw_b", "ours_b")
            )
            print(
                f"| {writers} | {ra:,.0f} | {oa:,.0f} | {oa / ra:.0%} "
                f"| {rb:,.0f} | {ob:,.0f} | {ob / rb:.0%} | {ob / oa:.2f} | {cpu} | {load} |",
                flush=True,
            )
    finally:
        for url in urls.values():
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS bench_raw_events")


if __name__ == "__main__":
    main()
