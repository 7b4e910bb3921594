"""Latency of the live event feed at idle: from an event's commit to its arrival at an SSE client.

Run: ``.venv/bin/python -m bench.feed [--events 200] [--gap 0.05]``

Starts the real ``schemasaga serve`` on fresh databases (like ``bench.saga``), opens
``GET /v1/events/stream`` over HTTP, then appends ``--events`` events one at a time (one commit each,
``--gap`` seconds apart, so the feed is idle when each one comes) and times each from the return of its
commit to the arrival of the SSE message carrying its position. The baseline, measured in the same run on
the same server: the same commits heard by a bare ``LISTEN`` connection (the notice the feed wakes on), so
the ratio is what the feed adds (its reads of the sequence, the running transactions and the event, the
HTTP framing). Everything has a timeout: a lost event fails the run after 10 s, the whole run after 300 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import psycopg

from bench.saga import fresh_databases, ms, pct, running_service
from schemasaga.sql import queries

APPEND = """
INSERT INTO event_store_events (event_id, event_type, data, metadata)
VALUES (gen_random_uuid(), 'BenchPing', jsonb_build_object('n', %(n)s::int), '{}')
RETURNING position
"""
LOST_AFTER = 10.0
WHOLE_RUN = 300.0


async def feed_latencies(url: str, core: str, *, events: int, gap: float) -> list[float]:
    arrived: dict[int, float] = {}
    ready = asyncio.Event()

    async def listen(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/v1/events/stream", params={"after": 0}) as response:
            response.raise_for_status()
            ready.set()
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    arrived[int(line[4:])] = time.perf_counter()

    latencies = []
    timeout = httpx.Timeout(10.0, read=60.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        reader = asyncio.create_task(listen(client))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await asyncio.sleep(1.0)  # past the events of the service's start
            async with await psycopg.AsyncConnection.connect(core, autocommit=True) as conn:
                for n in range(events):
                    await asyncio.sleep(gap)
                    row = await (await conn.execute(APPEND, {"n": n})).fetchone()
                    committed = time.perf_counter()
                    assert row is not None
                    position = int(row[0])
                    deadline = committed + LOST_AFTER
                    while position not in arrived:
                        if time.perf_counter() > deadline:
                            raise AssertionError(
                                f"event at position {position} not delivered in {LOST_AFTER}s"
                            )
                        await asyncio.sleep(0.0005)
                    latencies.append(arrived[position] - committed)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return latencies


async def notify_latencies(core: str, *, events: int, gap: float) -> list[float]:
    """The same commits (the trigger of migration 0014 notifies) heard on a bare LISTEN connection (which says
    it listens, as migration 0017 asks)."""
    latencies = []
    async with (
        await psycopg.AsyncConnection.connect(core, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(core, autocommit=True) as writer,
    ):
        await listener.execute("LISTEN schemasaga_events_appended")
        await listener.execute(queries("feed")["listening"])  # appends notify only when heard (0017)
        for n in range(events):
            await asyncio.sleep(gap)
            await writer.execute(APPEND, {"n": n})
            committed = time.perf_counter()
            # One notice at a time: a notifies() generator left open holds the connection's lock.
            heard = [x async for x in listener.notifies(timeout=LOST_AFTER, stop_after=1)]
            if not heard:
                raise AssertionError(f"no notice in {LOST_AFTER}s")
            latencies.append(time.perf_counter() - committed)
    return latencies


def summary(name: str, values: list[float]) -> dict[str, Any]:
    return {
        "case": name,
        "n": len(values),
        "p50_ms": ms(pct(values, 50)),
        "p99_ms": ms(pct(values, 99)),
        "max_ms": ms(max(values)),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05)
    args = parser.parse_args()
    with fresh_databases("feed") as (core_name, byodb_name):
        async with running_service(core_name, byodb_name) as service:
            async with asyncio.timeout(WHOLE_RUN):
                feed = await feed_latencies(
                    service.base_url, service.core_conninfo, events=args.events, gap=args.gap
                )
                baseline = await notify_latencies(service.core_conninfo, events=args.events, gap=args.gap)
    rows = [summary("LISTEN/NOTIFY (baseline)", baseline), summary("SSE feed", feed)]
    for row in rows:
        print(
            f"{row['case']:<26} n={row['n']}  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
            f"max {row['max_ms']} ms"
        )
    p50, p99 = pct(feed, 50) / pct(baseline, 50), pct(feed, 99) / pct(baseline, 99)
    print(f"ratio feed/baseline: p50 {p50:.1f}x, p99 {p99:.1f}x")
    verdict = "met" if pct(feed, 99) <= 0.2 else "NOT met"
    print(f"target p99 <= 200 ms: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
