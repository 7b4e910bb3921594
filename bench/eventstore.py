"""Event store throughput against raw psycopg, on a fresh database.

Run: ``.venv/bin/python -m bench.eventstore [--seconds 6] [--read-events 50000] [--pool-size N]``

The reference for issue 12's append target (>= 0.70x raw with 1 and with 4 writers). Raw is the cheapest
way a client can store an event: one autocommit INSERT of a row with two indexes, on its own connection per
writer. The store gets as many pool connections as there are writers, the same warm-up, and alternating
slices; one event loop drives every writer, raw and store alike, so the client's CPU per operation (shown)
counts as it does in the service. ``bench.eventstore_ab`` runs these same writers on two databases at once.

Uses ``SCHEMASAGA_BENCH_DATABASE_URL`` when set (the schema is applied to it and the raw table dropped
after), else creates a database on the local PostgreSQL (127.0.0.1:5432, user postgres) and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb.migrations import upgrade
from schemasaga.eventstore import EventStore, NewEvent

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PAYLOAD = {"table_id": "00000000-0000-0000-0000-000000000000", "name": "my_new_table_123", "n": 1}

# Bench-only DDL and statements (the store's own SQL lives in sql/queries/eventstore.sql).
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_raw_events (
    id          bigserial   PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    data        jsonb       NOT NULL
)"""
RAW_INSERT = "INSERT INTO bench_raw_events (event_id, event_type, data) VALUES (%s, %s, %s::jsonb)"
RAW_SELECT = "SELECT position, event_id, event_type, data, metadata, created_at FROM event_store_events"


@dataclass
class Result:
    name: str
    count: int
    seconds: float
    cpu: float = 0.0  # the client's CPU seconds (getrusage), when measured
    server_cpu: float = 0.0  # its backends' CPU seconds, when measured
    pair_ratios: list[float] = field(default_factory=list)  # ours/raw of each pair of slices

    @property
    def cpu_us(self) -> float:
        """Client CPU per operation, in microseconds."""
        return self.cpu / self.count * 1e6

    @property
    def server_cpu_us(self) -> float:
        """Backend CPU per operation, in microseconds."""
        return self.server_cpu / self.count * 1e6

    @property
    def rate(self) -> float:
        return self.count / self.seconds


Writer = Callable[[], Awaitable[None]]


async def timed(writers: list[Writer], seconds: float) -> int:
    """Run each writer in a loop, concurrently, for ``seconds``; the number of writes done."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * len(writers)

    async def loop(w: int) -> None:
        while time.perf_counter() < stop_at:
            await writers[w]()
            counts[w] += 1

    await asyncio.gather(*(loop(w) for w in range(len(writers))))
    return sum(counts)


def raw_writers(conns: list[psycopg.AsyncConnection[Any]]) -> list[Writer]:
    """The raw baseline: one insert of an event row per call, on its own autocommit connection (one round
    trip per insert-and-commit, the cheapest way a client can store an event)."""
    payload = json.dumps(PAYLOAD)

    def raw_writer(conn: psycopg.AsyncConnection[Any]) -> Writer:
        async def write() -> None:
            await conn.execute(RAW_INSERT, (uuid.uuid4(), "BenchEvent", payload))

        return write

    return [raw_writer(c) for c in conns]


def store_writers(store: EventStore, writers: int, tag: str, random_ids: bool = False) -> list[Writer]:
    """``writers`` appenders: each appends one event per call (one commit) to its own streams, 50 of them
    in turn; ``random_ids``: uuid4 event ids instead of NewEvent's time-ordered default."""

    def store_writer(w: int) -> Writer:
        n = 0

        async def write() -> None:
            nonlocal n
            n += 1
            event = (
                NewEvent("BenchEvent", PAYLOAD, event_id=uuid.uuid4())
                if random_ids
                else NewEvent("BenchEvent", PAYLOAD)
            )
            await store.append(f"Bench${tag}-w{writers}-{w}-{n % 50}", [event])

        return write

    return [store_writer(w) for w in range(writers)]


async def writer_pool(conninfo: str, size: int) -> AsyncConnectionPool[Any]:
    """The store's pool for ``size`` writers: as many connections as the raw side has. A bigger pool is
    not the same test: psycopg_pool hands out its idle connections in turn (first in, first out), so one
    writer on a pool of 4 sends each append to the backend that has waited longest, and pays for 4
    backends' cold caches where raw has one warm one (measured: 0.50-0.63x raw against 0.69-0.70x with a
    pool of one, in the same run; ``--pool-size`` shows it)."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(conninfo, open=False, min_size=size, max_size=size)
    await pool.open(wait=True)
    return pool


def cpu_seconds() -> float:
    """This process's CPU time (user and system): the client's cost, the bench's one event loop driving
    every writer, raw and store alike."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def backend_pids(conns: list[psycopg.AsyncConnection[Any]]) -> list[int]:
    return [conn.info.backend_pid for conn in conns]


async def pool_pids(pool: AsyncConnectionPool[Any], size: int) -> list[int]:
    """The backends of the pool's ``size`` connections (all taken at once, then given back)."""
    conns = [await pool.getconn() for _ in range(size)]
    try:
        return await backend_pids(conns)
    finally:
        for conn in conns:
            await pool.putconn(conn)


def server_cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) of these PostgreSQL backends, from /proc (the server is local)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


async def compare_writes(
    conninfo: str, pool: AsyncConnectionPool[Any], writers: int, seconds: float, slices: int = 24
) -> tuple[Result, Result]:
    """Raw inserts against EventStore.append, in alternating short slices so that the machine's noise
    (other load, fsync latency) falls on both alike; equal warm-up for both. Counts and times add up over
    the slices; each slice pair's ratio is kept too (their median resists a burst of noise)."""
    conns = [await psycopg.AsyncConnection.connect(conninfo, autocommit=True) for _ in range(writers)]
    raw = raw_writers(conns)
    ours = store_writers(EventStore(pool), writers, "ref")
    pids = {"raw": await backend_pids(conns), "ours": await pool_pids(pool, pool.max_size)}
    try:
        await timed(raw, 0.3)  # warm-up: connections, prepared statements
        await timed(ours, 0.3)
        results = {"raw": Result("raw", 0, 0.0), "ours": Result("ours", 0, 0.0)}
        ratios = []
        for _ in range(slices):
            rates = {}
            for kind, ws in (("raw", raw), ("ours", ours)):
                result = results[kind]
                t, c, sc = time.perf_counter(), cpu_seconds(), server_cpu_seconds(pids[kind])
                count = await timed(ws, seconds / slices)
                elapsed = time.perf_counter() - t
                result.count += count
                result.seconds += elapsed
                result.cpu += cpu_seconds() - c
                result.server_cpu += server_cpu_seconds(pids[kind]) - sc
                rates[kind] = count / elapsed
            ratios.append(rates["ours"] / rates["raw"])
        results["ours"].pair_ratios = ratios
    finally:
        for conn in conns:
            await conn.close()
    return results["raw"], results["ours"]


async def fill(conninfo: str, store: EventStore, events: int) -> None:
    have = len(await store.read_all(limit=events))
    for i in range((events - have + 499) // 500):
        await store.append(f"Bench$fill-{i}", [NewEvent("BenchEvent", PAYLOAD) for _ in range(500)])
    # As autovacuum would soon: a never-analyzed table gets sort-based plans for the keyset reads.
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE event_store_events")


async def read_log(store: EventStore, limit: int) -> Result:
    start = time.perf_counter()
    count = 0
    async for batch in store.read_batches(batch_size=1000, to_position=None):
        count += len(batch)
        if count >= limit:
            break
    return Result("EventStore.read_batches (1000/batch)", count, time.perf_counter() - start)


async def follow_log(store: EventStore, limit: int) -> Result:
    start = time.perf_counter()
    count = 0
    async for _ in store.follow(batch_size=1000, poll_interval=0.01):
        count += 1
        if count >= limit:
            break
    return Result("EventStore.follow (1000/batch)", count, time.perf_counter() - start)


async def raw_read(conninfo: str, limit: int) -> Result:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        start = time.perf_counter()
        cur = conn.cursor(binary=True)
        await cur.execute(RAW_SELECT + " ORDER BY position LIMIT %s", (limit,))
        rows = await cur.fetchall()
        return Result("raw SELECT, one fetchall (no objects)", len(rows), time.perf_counter() - start)


async def run(
    conninfo: str, seconds: float, read_events: int, pool_size: int | None = None
) -> list[tuple[str, Result, Result | None, str]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
    rows: list[tuple[str, Result, Result | None, str]] = []
    try:
        for writers in (1, 4):  # issue 12: >= 0.70x raw with 1 writer and with 4
            pool = await writer_pool(conninfo, pool_size or writers)
            try:
                raw, ours = await compare_writes(conninfo, pool, writers, seconds)
            finally:
                await pool.close()
            rows.append((f"append, {writers} writer(s), events/s", ours, raw, ">= 70%"))
        pool = await writer_pool(conninfo, 4)
        try:
            store = EventStore(pool)
            await fill(conninfo, store, read_events)
            raw_r = await raw_read(conninfo, read_events)
            read = await read_log(store, read_events)
            rows.append(("read global log, events/s", read, raw_r, ">= 100,000/s"))
            rows.append(("follow global log, events/s", await follow_log(store, read_events), raw_r, "-"))
        finally:
            await pool.close()
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_raw_events")
    return rows


def report(rows: list[tuple[str, Result, Result | None, str]]) -> str:
    lines = [
        f"| {'case':<38} | {'ours':>10} | {'raw':>10} | {'ours/raw':>8} | {'median of pairs':>15} "
        f"| {'target':>12} | {'client us/op ours / raw':>23} | {'server us/op ours / raw':>23} |",
        f"|{'-' * 40}|{'-' * 12}:|{'-' * 12}:|{'-' * 10}:|{'-' * 17}:|{'-' * 14}:|{'-' * 25}:|{'-' * 25}:|",
    ]
    for name, ours, raw, target in rows:
        raw_rate = f"{raw.rate:,.0f}" if raw else "-"
        ratio = f"{ours.rate / raw.rate:.0%}" if raw else "-"
        median = f"{statistics.median(ours.pair_ratios):.0%}" if ours.pair_ratios else "-"
        cpu = f"{ours.cpu_us:,.0f} / {raw.cpu_us:,.0f}" if raw and raw.cpu else "-"
        server = f"{ours.server_cpu_us:,.0f} / {raw.server_cpu_us:,.0f}" if raw and raw.cpu else "-"
        lines.append(
            f"| {name:<38} | {ours.rate:>10,.0f} | {raw_rate:>10} | {ratio:>8} | {median:>15} | {target:>12} "
            f"| {cpu:>23} | {server:>23} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per write case and side")
    parser.add_argument("--read-events", type=int, default=50_000, help="events in the read cases")
    parser.add_argument(
        "--pool-size", type=int, default=None, help="the store's pool when writing (default: one per writer)"
    )
    args = parser.parse_args()
    url = os.environ.get("SCHEMASAGA_BENCH_DATABASE_URL")
    created = None
    if url is None:
        created = f"bench_es_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(LOCAL_SERVER, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {created}")
        url = make_conninfo(LOCAL_SERVER, dbname=created)
    try:
        upgrade(url)
        rows = asyncio.run(run(url, args.seconds, args.read_events, args.pool_size))
    finally:
        if created is not None:
            with psycopg.connect(LOCAL_SERVER, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {created} WITH (FORCE)")
    print(report(rows))


if __name__ == "__main__":
    main()
