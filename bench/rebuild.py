"""``projections rebuild`` alone, before and after its fast path, on the same data in the same run.

Run: ``.venv/bin/python -m bench.rebuild`` (``--tables N --events M``; default 10,000 tables / 1,000,000
events, filled as :mod:`bench.scale` fills them: server-side copies of one table's history). The rebuild
runs ``--rounds`` times in each mode, alternating (the machine is shared: alternating spreads its load over
both): ``domain`` (each table's events folded by the Table aggregate, every event parsed: the path before)
and the default (:mod:`schemasaga.coredb.directfold` over lean reads, and the build split over
``--workers`` processes).
After each run the read models are compared with those of the first run (they must be equal).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.saga import db_conninfo, fresh_databases
from bench.scale import fill
from schemasaga.coredb import migrations
from schemasaga.coredb.rebuild import OnlineRebuild
from schemasaga.eventstore import EventStore

# A digest of each row's digest, in key order: the rows' text itself, aggregated, passes PostgreSQL's 1 GB
# string limit at 10M events.
SNAPSHOT = {
    "rm_tables": "SELECT md5(string_agg(md5(t::text), '' ORDER BY table_id)) FROM rm_tables t",
    "rm_operations": "SELECT md5(string_agg(md5((to_jsonb(o) - 'starts')::text), '' ORDER BY operation_id)) "
    "FROM rm_operations o",
    "rm_trash": "SELECT md5(string_agg(md5(t::text), '' ORDER BY trash_id)) FROM rm_trash t",
    "rm_databases": "SELECT md5(string_agg(md5(d::text), '' ORDER BY name)) FROM rm_databases d",
}


def checksums(conninfo: str) -> dict[str, Any]:
    with psycopg.connect(conninfo) as conn:
        return {name: conn.execute(q).fetchone() for name, q in SNAPSHOT.items()}


async def run(conninfo: str, *, fold: str, workers: int, batch_size: int) -> tuple[int, float]:
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=4) as pool:
        job = OnlineRebuild(conninfo, EventStore(pool), batch_size=batch_size, fold=fold, workers=workers)
        out = await job.run()
    return out.events, out.seconds


async def amain(args: argparse.Namespace) -> None:
    print(
        f"rebuild bench: {args.tables:,} tables, {args.events:,} events, batch {args.batch_size}, "
        f"fast path with {args.workers} process(es) (load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    with fresh_databases("rebuild") as (core, _):
        info = db_conninfo(core)
        migrations.upgrade(info)
        written, seconds = fill(info, args.tables, args.events, small=0, big=0)
        print(f"fill: {written:,} events in {seconds:.1f} s", flush=True)
        modes = [("domain", 1), ("fast", 1), ("fast", args.workers)]
        rates: dict[tuple[str, int], list[float]] = {m: [] for m in modes}
        expected = None
        for r in range(args.rounds):
            for fold, workers in modes:
                started = time.monotonic()
                events, secs = await run(info, fold=fold, workers=workers, batch_size=args.batch_size)
                sums = checksums(info)
                expected = expected or sums
                assert sums == expected, f"{fold}/{workers}: the read models differ from the first run's"
                rates[(fold, workers)].append(events / secs)
                print(
                    f"round {r + 1} {fold} x{workers}: {events:,} events in {secs:.2f} s = "
                    f"{events / secs:,.0f} events/s (wall {time.monotonic() - started:.1f} s, "
                    f"load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    base = statistics.median(rates[("domain", 1)])
    print()
    print("| path | median events/s | ratio to domain |")
    print("|---|---|---|")
    for (fold, workers), values in rates.items():
        m = statistics.median(values)
        print(f"| {fold}, {workers} process(es) | {m:,.0f} | {m / base:.2f}x |")
    print(f"read models equal across all runs; load average at the end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
