"""Event append against raw inserts on two core databases at once, in interleaved slices: an A/B of two
schemas (say, one upgraded by an older checkout) with the same client code, on a machine too noisy for
separate runs. The writers, the pool (one connection per writer) and the warm-up are bench.eventstore's,
the reference for the append target; this bench only adds the second database.

Run: ``.venv/bin/python -m bench.eventstore_ab --a URL_A --b URL_B [--rounds 12] [--slice 0.5]``
``[--a-ids uuid4 | --b-ids uuid4] [--prefill N]``

Both databases must exist and be upgraded already (``schemasaga db upgrade``, or ``upgrade()`` from the
checkout whose schema they stand for); each gets the raw table of bench.eventstore, dropped after. Per
round and writer count, four slices in turn: raw on A, append on A, raw on B, append on B; the counts
and times add up over the rounds, so the machine's noise falls on all four alike.

``--a-ids uuid4`` (or ``--b-ids``) makes that side append with random uuid4 event ids, as the client did
before event ids became time-ordered (NewEvent's default): an A/B of that client change on one schema
(swap the sides between runs: on a busy machine one side can come out ahead by itself).
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

from bench.eventstore import PAYLOAD, RAW_TABLE, Writer, raw_writers, store_writers, timed, writer_pool
from schemasaga.eventstore import EventStore

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
    conninfo: str, writers: int, tag: str, random_ids: bool = False
) -> tuple[list[Writer], list[Writer], Any]:
    """(raw writers, append writers, what to close) on one database: bench.eventstore's own writers and
    pool, so that both benches measure the same thing."""
    conns = [await psycopg.AsyncConnection.connect(conninfo, autocommit=True) for _ in range(writers)]
    pool = await writer_pool(conninfo, writers)

    async def close() -> None:
        for conn in conns:
            await conn.close()
        await pool.close()

    return raw_writers(conns), store_writers(EventStore(pool), writers, tag, random_ids), close


async def compare(
    urls: dict[str, str],
    writers: int,
    rounds: int,
    slice_seconds: float,
    random_ids: frozenset[str] = frozenset(),
) -> dict[str, float]:
    sides = {name: await side(url, writers, name, name in random_ids) for name, url in urls.items()}
    counts = {f"{kind}_{name}": 0 for name in urls for kind in ("raw", "ours")}
    times = dict.fromkeys(counts, 0.0)
    try:
        for raw, ours, _ in sides.values():  # warm-up: connections, prepared statements
            await timed(raw, 0.3)
            await timed(ours, 0.3)
        for _ in range(rounds):
            for name, (raw, ours, _) in sides.items():
                for kind, ws in (("raw", raw), ("ours", ours)):
                    t = time.perf_counter()
                    counts[f"{kind}_{name}"] += await timed(ws, slice_seconds)
                    times[f"{kind}_{name}"] += time.perf_counter() - t
    finally:
        for _, _, close in sides.values():
            await close()
    return {key: counts[key] / times[key] for key in counts}


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
    print("| writers | raw A | append A | A ratio | raw B | append B | B ratio | append B / A | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    try:
        for writers in (int(w) for w in args.writers.split(",")):
            rates = asyncio.run(compare(urls, writers, args.rounds, args.slice, random_ids))
            ra, oa, rb, ob = rates["raw_a"], rates["ours_a"], rates["raw_b"], rates["ours_b"]
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"| {writers} | {ra:,.0f} | {oa:,.0f} | {oa / ra:.0%} "
                f"| {rb:,.0f} | {ob:,.0f} | {ob / rb:.0%} | {ob / oa:.2f} | {load} |",
                flush=True,
            )
    finally:
        for url in urls.values():
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS bench_raw_events")


if __name__ == "__main__":
    main()
