"""How long a saga's job waits before a worker starts it, read from the events' ``created_at``.

Run: ``.venv/bin/python -m bench.job_latency [--isolated 40] [--paced 150] [--tables 12] [--changes 5]``

Starts the real ``schemasaga serve`` (in-process worker, default settings: polling interval 0.5 s unless
``SCHEMASAGA_JOB_POLLING_INTERVAL`` is set) on fresh databases, like ``bench.saga``, then:

  isolated  creates one at a time, each after the previous one is synced (an idle worker, woken only
            by LISTEN/NOTIFY or its poll): gap TableCreated -> first SagaStepCompleted of the same
            operation (that step includes the CREATE TABLE itself, a few ms)
  paced     one create every 20 ms without waiting (a worker busy with earlier jobs): same gap
  chained   per table (one table at a time unless --parallel), a burst of column adds queued behind
            each other: gap from one change's outcome
            (TableCreationConfirmed / TableChangeConfirmed of op N) to the first SagaStepCompleted of
            op N+1, whose job was deferred in that outcome's transaction under the table's lock

Reports the distribution of each gap, its p99 and max, and how many exceeded 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
import psycopg

from bench.saga import create, fresh_databases, ms, new_name, pct, running_service

# For each operation: when its first event (TableCreated / TableChanged) and its first
# SagaStepCompleted were written.
FIRST_STEP_GAPS = """
SELECT e.metadata ->> 'correlation_id' AS op,
       min(e.created_at) FILTER (WHERE e.event_type = %(intent)s) AS accepted,
       min(e.created_at) FILTER (WHERE e.event_type = 'SagaStepCompleted') AS first_step
FROM event_store_events e
WHERE e.metadata ->> 'correlation_id' = ANY(%(ops)s)
GROUP BY 1
"""

# Every table's stream in order, to pair an outcome with the next operation's first step.
STREAM_EVENTS = """
SELECT s.stream, s.version, e.event_type, e.metadata ->> 'correlation_id' AS op, e.created_at
FROM event_store_events_in_streams s JOIN event_store_events e USING (event_id)
WHERE s.stream = ANY(%(streams)s)
ORDER BY s.stream, s.version
"""

# The phases of each create: accepted -> first step (job wait + CREATE TABLE) -> outcome (verify +
# the outcome's commit).
PHASES = """
SELECT e.metadata ->> 'correlation_id' AS op,
       min(e.created_at) FILTER (WHERE e.event_type = 'TableCreated'),
       min(e.created_at) FILTER (WHERE e.event_type = 'SagaStepCompleted'),
       min(e.created_at) FILTER (WHERE e.event_type = 'TableCreationConfirmed')
FROM event_store_events e
WHERE e.metadata ->> 'correlation_id' = ANY(%(ops)s)
GROUP BY 1
"""

# Bench-only: a copy of procrastinate's job events with the wall clock of the insert (its own ``at`` is
# the transaction's start), kept after the successful jobs are deleted.
JOB_EVENTS_TRIGGER = """
CREATE TABLE bench_job_events (
    job_id bigint, type text, operation_id text, at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION bench_copy_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_job_events (job_id, type, operation_id)
    SELECT NEW.job_id, NEW.type::text, j.args ->> 'operation_id'
    FROM procrastinate_jobs j WHERE j.id = NEW.job_id;
    RETURN NEW;
END $$;
CREATE TRIGGER bench_copy_job_event AFTER INSERT ON procrastinate_events
    FOR EACH ROW EXECUTE FUNCTION bench_copy_job_event();
-- The worker deletes successful jobs (delete_jobs="successful") instead of marking them.
CREATE FUNCTION bench_job_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_job_events (job_id, type, operation_id)
    VALUES (OLD.id, 'deleted', OLD.args ->> 'operation_id');
    RETURN OLD;
END $$;
CREATE TRIGGER bench_job_deleted BEFORE DELETE ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION bench_job_deleted();
"""

# Deferred -> started of each job of the given operations (first start of each job).
JOB_WAITS = """
SELECT job_id,
       min(at) FILTER (WHERE type = 'started') - min(at) FILTER (WHERE type = 'deferred'),
       min(at) FILTER (WHERE type IN ('succeeded', 'failed', 'deleted'))
           - min(at) FILTER (WHERE type = 'started')
FROM bench_job_events
WHERE operation_id = ANY(%(ops)s)
GROUP BY job_id
"""

OUTCOMES = {"TableCreationConfirmed", "TableChangeConfirmed", "TableCreationRejected", "TableChangeRejected"}


def report(label: str, gaps: list[float]) -> None:
    over = sum(1 for g in gaps if g > 1.0)
    over_half = sum(1 for g in gaps if g > 0.45)
    print(
        f"{label}: n={len(gaps)} p50={ms(pct(gaps, 50))} ms p90={ms(pct(gaps, 90))} ms "
        f"p99={ms(pct(gaps, 99))} ms max={ms(max(gaps) if gaps else float('nan'))} ms; "
        f"> 0.45 s: {over_half}, > 1 s: {over}",
        flush=True,
    )


async def wait_synced(client: httpx.AsyncClient, table_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (await client.post("/table/show", json={"table_id": table_id})).json()["table"]["synced"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"table {table_id} not synced after {timeout} s")
        await asyncio.sleep(0.005)


async def first_step_gaps(conninfo: str, ops: list[str], intent: str) -> list[float]:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        rows = await (await conn.execute(FIRST_STEP_GAPS, {"ops": ops, "intent": intent})).fetchall()
    return [(r[2] - r[1]).total_seconds() for r in rows if r[1] is not None and r[2] is not None]


async def phases(conninfo: str, ops: list[str]) -> tuple[list[float], list[float]]:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        rows = await (await conn.execute(PHASES, {"ops": ops})).fetchall()
    rows = [r for r in rows if None not in r]
    return [(r[2] - r[1]).total_seconds() for r in rows], [(r[3] - r[2]).total_seconds() for r in rows]


async def install_job_trigger(conninfo: str) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(JOB_EVENTS_TRIGGER)


async def job_waits(conninfo: str, ops: list[str]) -> tuple[list[float], list[float]]:
    """(deferred -> started, started -> finished) of each job of ``ops``, in seconds."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        rows = await (await conn.execute(JOB_WAITS, {"ops": ops})).fetchall()
    return (
        [r[1].total_seconds() for r in rows if r[1] is not None],
        [r[2].total_seconds() for r in rows if r[2] is not None],
    )


async def report_jobs(label: str, conninfo: str, ops: list[str]) -> None:
    waits, runs = await job_waits(conninfo, ops)
    report(f"    {label} jobs, deferred -> started", waits)
    print(f"    {label} jobs, started -> finished: p50={ms(pct(runs, 50))} ms p90={ms(pct(runs, 90))} ms")


async def chained_gaps(conninfo: str, table_ids: list[str]) -> list[float]:
    streams = [f"Table${t}" for t in table_ids]
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        rows = await (await conn.execute(STREAM_EVENTS, {"streams": streams})).fetchall()
    by_stream: dict[str, list[Any]] = {}
    for row in rows:
        by_stream.setdefault(row[0], []).append(row)
    gaps: list[float] = []
    for events in by_stream.values():
        for i, (_s, _v, etype, op, at) in enumerate(events):
            if etype not in OUTCOMES:
                continue
            # The next operation's first step after this outcome (skipping its own intent event).
            nxt = next((e for e in events[i + 1 :] if e[2] == "SagaStepCompleted" and e[3] != op), None)
            if nxt is not None:
                gaps.append((nxt[4] - at).total_seconds())
    return gaps


async def amain(args: argparse.Namespace) -> None:
    with fresh_databases("jl") as (core, byodb):
        async with (
            running_service(core, byodb, separate_worker=args.separate_worker) as service,
            httpx.AsyncClient(base_url=service.base_url, timeout=30) as client,
        ):
            await install_job_trigger(service.core_conninfo)
            for _ in range(3):  # warm-up
                table_id, _op = await create(client, new_name("warm"))
                await wait_synced(client, table_id)

            ops: list[str] = []
            stop_at = time.perf_counter() + args.seconds
            while len(ops) < args.isolated and time.perf_counter() < stop_at:
                table_id, op = await create(client, new_name("iso"))
                ops.append(op)
                await wait_synced(client, table_id)
                await asyncio.sleep(0.02)
            report(
                "isolated creates, TableCreated -> first step",
                await first_step_gaps(service.core_conninfo, ops, "TableCreated"),
            )

            to_step, to_outcome = await phases(service.core_conninfo, ops)
            print(
                f"    isolated phases (p50): accepted -> first step {ms(pct(to_step, 50))} ms, "
                f"first step -> confirmed {ms(pct(to_outcome, 50))} ms",
                flush=True,
            )
            await report_jobs("isolated", service.core_conninfo, ops)

            ops = []
            for _ in range(args.paced):
                t0 = time.perf_counter()
                _tid, op = await create(client, new_name("pace"))
                ops.append(op)
                await asyncio.sleep(max(0.0, 0.02 - (time.perf_counter() - t0)))
            await asyncio.sleep(3)  # let the backlog drain before reading
            report(
                "paced creates (every 20 ms), TableCreated -> first step",
                await first_step_gaps(service.core_conninfo, ops, "TableCreated"),
            )
            await report_jobs("paced", service.core_conninfo, ops)

            chained_ops: list[str] = []

            slots = asyncio.Semaphore(args.parallel)

            async def burst() -> str:
                async with slots:
                    return await one_burst()

            async def one_burst() -> str:
                table_id, _op = await create(client, new_name("chain"))
                for c in range(args.changes):
                    body = {"table_id": table_id, "column": {"name": f"c{c}", "type": "integer"}}
                    r = await client.post("/table/column", json=body)
                    r.raise_for_status()
                    chained_ops.append(r.json()["operation_id"])
                await wait_synced(client, table_id, timeout=60)
                return table_id

            tables = await asyncio.gather(*(burst() for _ in range(args.tables)))
            report(
                f"chained ({args.tables} tables x create + {args.changes} adds, {args.parallel} at a time), "
                "outcome N -> first step N+1",
                await chained_gaps(service.core_conninfo, list(tables)),
            )
            await report_jobs("chained column-add", service.core_conninfo, chained_ops)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--isolated", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound of the isolated case")
    parser.add_argument("--paced", type=int, default=150)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument(
        "--parallel", type=int, default=1, help="chained tables in flight at once (1: an idle worker)"
    )
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument(
        "--separate-worker", action="store_true", help="serve --no-worker + schemasaga worker"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    asyncio.run(amain(args))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
