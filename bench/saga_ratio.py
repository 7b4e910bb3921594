"""Create-table sagas against raw ``CREATE TABLE``, in alternating slices: issue 12's ratio target.

Run: ``.venv/bin/python -m bench.saga_ratio [--rounds 8] [--n 150] [--clients 16] [--raw-seconds 1.5]``

``bench.saga`` measures the raw rate once before and once after its service cases. On these shared
machines that rate moved between 113 and 576 tables/s from one run to the next (sequential DDL, one
commit each, is sensitive to whatever else the host does), so one saga figure divided by one raw figure
says more about the moment than about the service. Here one ``schemasaga serve`` (in-process worker, the
default worker concurrency unless ``--concurrency``) stays up on a fresh core database and BYODB, and the
bench alternates ``--rounds`` times: a raw slice (sequential ``CREATE TABLE`` of the same 4-column shape
on a database of its own on the same server, one per commit, for ``--raw-seconds``), then a saga slice
(``--n`` creates from ``--clients`` HTTP clients, timed from the first request to the last outcome's
commit, ``rm_operations.finished_at``). Each saga slice is compared with the mean of the raw slices on
either side of it; the verdict is the median of those pair ratios (target >= 0.30), with their range.
Both sides accumulate tables as the rounds go on, the raw database and the BYODB alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import psycopg
from psycopg import sql

from bench.saga import (
    RAW_CREATE,
    create,
    db_conninfo,
    finished_count,
    fresh_databases,
    new_name,
    running_service,
)


def raw_slice(
    conn: psycopg.Connection[tuple[object, ...]], seconds: float, start_index: int
) -> tuple[float, int]:
    """Sequential CREATE TABLE on ``conn`` (autocommit) for ``seconds``: (tables/s, tables made)."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute(sql.SQL(RAW_CREATE).format(sql.Identifier(f"raw_{start_index + n}")))
        n += 1
    return n / (time.perf_counter() - start), n


async def saga_slice(
    client: httpx.AsyncClient, conn: psycopg.AsyncConnection[tuple[object, ...]], n: int, clients: int
) -> float:
    """``n`` creates from ``clients`` concurrent clients; sagas/s from the first request to the last
    outcome's commit (the core database's clock, as ``bench.saga``'s throughput case)."""
    before = sum(await finished_count(conn, "create_table"))
    names = [new_name("ratio") for _ in range(n)]

    async def fire() -> None:
        while names:
            await create(client, names.pop())

    start_wall = time.time()
    await asyncio.gather(*(fire() for _ in range(clients)))
    deadline = time.monotonic() + 120
    while sum(await finished_count(conn, "create_table")) < before + n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} sagas did not finish in 120 s")
        await asyncio.sleep(0.01)
    row = await (
        await conn.execute("SELECT extract(epoch FROM max(finished_at)) FROM rm_operations")
    ).fetchone()
    assert row is not None and row[0] is not None
    return n / (float(str(row[0])) - start_wall)


async def amain(args: argparse.Namespace) -> None:
    with fresh_databases("ratio") as (core, byodb), fresh_databases("ratioraw") as (_unused, raw_db):
        async with running_service(core, byodb, concurrency=args.concurrency) as service:
            limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
            async with (
                httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=30) as client,
                await psycopg.AsyncConnection.connect(service.core_conninfo, autocommit=True) as conn,
            ):
                with psycopg.connect(db_conninfo(raw_db), autocommit=True) as raw:
                    made = 0
                    # Warm-up: both sides once, not counted.
                    _rate, k = raw_slice(raw, 0.3, made)
                    made += k
                    await saga_slice(client, conn, 20, args.clients)
                    raws: list[float] = []
                    sagas: list[float] = []
                    rate, k = raw_slice(raw, args.raw_seconds, made)
                    made += k
                    raws.append(rate)
                    for i in range(args.rounds):
                        sagas.append(await saga_slice(client, conn, args.n, args.clients))
                        rate, k = raw_slice(raw, args.raw_seconds, made)
                        made += k
                        raws.append(rate)
                        ratio = sagas[i] / ((raws[i] + raws[i + 1]) / 2)
                        print(
                            f"round {i + 1}: raw {raws[i]:.0f} -> {raws[i + 1]:.0f} tables/s, "
                            f"sagas {sagas[i]:.1f}/s, ratio {ratio:.3f}",
                            flush=True,
                        )
    ratios = [s / ((raws[i] + raws[i + 1]) / 2) for i, s in enumerate(sagas)]
    print(
        f"raw tables/s: median {statistics.median(raws):.0f} (range {min(raws):.0f}-{max(raws):.0f}); "
        f"sagas/s: median {statistics.median(sagas):.1f} (range {min(sagas):.1f}-{max(sagas):.1f})"
    )
    print(
        f"create sagas / raw CREATE TABLE, median of {len(ratios)} pair ratios: "
        f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}; target >= 0.30)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n", type=int, default=150, help="creates per saga slice")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--raw-seconds", type=float, default=1.5)
    parser.add_argument("--concurrency", type=int, default=None, help="SCHEMASAGA_WORKER_CONCURRENCY")
    args = parser.parse_args()
    t0 = time.perf_counter()
    asyncio.run(amain(args))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
