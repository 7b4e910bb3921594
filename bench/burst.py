"""A burst of creates against the job queue's steady rate: does the queue keep its pace from the start?

Run: ``.venv/bin/python -m bench.burst [--burst 10000] [--batch 300] [--clients 16] [--timeout 300]
[--cases without,with]`` (``SCHEMASAGA_BENCH_BURST`` also sets ``--burst``; 1,000 is a quick run).

Each case starts the real ``schemasaga serve`` (in-process worker, default settings) on fresh databases,
like ``bench.saga``, then:

  burst   N ``/table/create`` fired by K concurrent clients as fast as the API accepts them, timed from
          the first request until the last of them finished (``rm_operations.finished_at``)
  batch   then, with the queue empty again, 300 more the same way: the steady rate to compare with

and reports both rates, their ratio (target: burst >= 0.8x batch), and the jobs running at once
(``doing``, sampled every 0.5 s from ``procrastinate_jobs``) while the burst was being worked through.

``--explain N`` only prints the plan of procrastinate's job fetch on a fresh core database holding N
ready jobs, on statistics of the empty table and after ``ANALYZE`` (a few seconds).

Before the burst the bench runs ``ANALYZE procrastinate_jobs`` on the empty job table, as autovacuum
does on a quiet database (``--no-stale-stats`` skips it): the burst then starts on statistics taken
while the table was empty, the condition of issue 12's observation.

Cases: ``without`` runs with ``SCHEMASAGA_QUEUE_ANALYZE_INTERVAL=0`` (the worker never refreshes the
planner's statistics of ``procrastinate_jobs``: the queue lives on whatever autovacuum does, which is
nothing within its naptime, or ever when autovacuum is off), ``with`` on the default settings. A case
that does not finish within ``--timeout`` reports its rate over the timeout and what was left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

import httpx
import psycopg

from bench.saga import create, db_conninfo, fresh_databases, new_name, running_service
from schemasaga.coredb import migrations

FINISHED = """
SELECT count(*) FILTER (WHERE finished_at IS NOT NULL), extract(epoch FROM max(finished_at))
FROM rm_operations WHERE operation_id = ANY(%(ops)s::uuid[])
"""

QUEUE = """
SELECT count(*) FILTER (WHERE status = 'todo'), count(*) FILTER (WHERE status = 'doing')
FROM procrastinate_jobs
"""

# The candidate search of procrastinate's ``procrastinate_fetch_job_v2`` (procrastinate 3.10), as the
# worker runs it (all queues).
FETCH_CANDIDATE = """
SELECT jobs.id FROM procrastinate_jobs AS jobs
WHERE NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs AS other_jobs
        WHERE jobs.lock IS NOT NULL AND other_jobs.lock = jobs.lock
          AND (other_jobs.status = 'doing'
               OR (other_jobs.status = 'todo'
                   AND (other_jobs.priority > jobs.priority
                        OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)))))
  AND jobs.status = 'todo'
  AND (NULL::varchar[] IS NULL OR jobs.queue_name = ANY(NULL::varchar[]))
  AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
FOR UPDATE OF jobs SKIP LOCKED
"""

LAST_ANALYZE = """
SELECT coalesce(analyze_count, 0) + coalesce(autoanalyze_count, 0)
FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'
"""


@dataclass
class Phase:
    label: str
    n: int
    seconds: float = 0.0
    accept_seconds: float = 0.0
    finished: int = 0
    doing: list[int] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.finished / self.seconds if self.seconds else float("nan")

    def line(self) -> str:
        doing = (
            f"doing max {max(self.doing)}, median {statistics.median(self.doing):g}"
            f" over {len(self.doing)} samples"
            if self.doing
            else "doing: no samples"
        )
        left = f", {self.n - self.finished} NOT finished" if self.finished < self.n else ""
        return (
            f"{self.label}: {self.finished}/{self.n} in {self.seconds:.1f} s = {self.rate:.1f} sagas/s "
            f"(accepted in {self.accept_seconds:.1f} s){left}; {doing}"
        )


async def run_phase(base_url: str, conninfo: str, label: str, n: int, clients: int, timeout: float) -> Phase:
    phase = Phase(label, n)
    ops: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    names = iter([new_name("burst") for _ in range(n)])
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client,
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn,
    ):

        async def fire() -> None:
            for name in names:
                _tid, op = await create(client, name)
                ops.append(op)

        start_wall, start = time.time(), time.perf_counter()
        firing = asyncio.gather(*(fire() for _ in range(clients)))
        accepted = False
        next_line = 0.0
        while True:
            await asyncio.sleep(0.5)
            now = time.perf_counter() - start
            if not accepted and firing.done():
                await firing
                accepted = True
                phase.accept_seconds = now
            row = await (await conn.execute(QUEUE)).fetchone()
            assert row is not None
            todo, doing = int(row[0]), int(row[1])
            if todo + doing > 0:
                phase.doing.append(doing)
            fin = await (await conn.execute(FINISHED, {"ops": ops})).fetchone()
            assert fin is not None
            finished = int(fin[0])
            if now >= next_line:
                analyzed = await (await conn.execute(LAST_ANALYZE)).fetchone()
                phase.timeline.append(
                    f"  t={now:5.1f} s accepted {len(ops):5d} finished {finished:5d} todo {todo:5d} "
                    f"doing {doing:2d} analyzes {analyzed[0] if analyzed else '?'}"
                )
                next_line = now + 5.0
            if accepted and finished >= n:
                phase.finished = finished
                phase.seconds = float(fin[1]) - start_wall
                return phase
            if now > timeout:
                phase.finished = finished
                phase.seconds = now
                if not accepted:
                    firing.cancel()
                return phase


async def run_case(case: str, args: argparse.Namespace) -> tuple[Phase, Phase]:
    extra = {"SCHEMASAGA_QUEUE_ANALYZE_INTERVAL": "0"} if case == "without" else {}
    with fresh_databases("burst") as (core, byodb):
        async with running_service(core, byodb, extra_env=extra) as service:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
                for _ in range(3):  # warm-up: the service's pools and the BYODB adapter
                    await create(client, new_name("warm"))
            await asyncio.sleep(2)
            if args.stale_stats:
                async with await psycopg.AsyncConnection.connect(
                    service.core_conninfo, autocommit=True
                ) as conn:
                    await conn.execute("ANALYZE procrastinate_jobs")
            burst = await run_phase(
                service.base_url,
                service.core_conninfo,
                f"[{case}] burst",
                args.burst,
                args.clients,
                args.timeout,
            )
            for line in burst.timeline:
                print(line, flush=True)
            print(burst.line(), flush=True)
            if burst.finished < burst.n:
                return burst, Phase(f"[{case}] batch", 0)
            await asyncio.sleep(2)
            batch = await run_phase(
                service.base_url,
                service.core_conninfo,
                f"[{case}] batch",
                args.batch,
                args.clients,
                args.timeout,
            )
            print(batch.line(), flush=True)
            print(
                f"[{case}] burst/batch = {burst.rate / batch.rate:.2f} (target >= 0.8)",
                flush=True,
            )
            return burst, batch


def explain(n: int) -> None:
    """The fetch's plan on a fresh core database holding ``n`` ready jobs (one lock each, like a burst
    of creates), on statistics of the empty table, then after ``ANALYZE``."""
    with fresh_databases("burstplan") as (core, _byodb):
        conninfo = db_conninfo(core)
        migrations.upgrade(conninfo)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("ANALYZE procrastinate_jobs")
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args)"
                " SELECT 'default', 'schemasaga.run_saga', 'table:' || gen_random_uuid(), '{}'"
                " FROM generate_series(1, %s)",
                (n,),
            )
            for label in (
                f"statistics of the empty table, {n} ready jobs",
                "after ANALYZE procrastinate_jobs",
            ):
                if label.startswith("after"):
                    conn.execute("ANALYZE procrastinate_jobs")
                plan = [str(r[0]) for r in conn.execute("EXPLAIN ANALYZE " + FETCH_CANDIDATE).fetchall()]
                print(f"-- {label}:", *plan, sep="\n  ", flush=True)


async def amain(args: argparse.Namespace) -> None:
    for case in args.cases.split(","):
        await run_case(case.strip(), args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=int(os.environ.get("SCHEMASAGA_BENCH_BURST", "10000")))
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a phase may take at most")
    parser.add_argument("--cases", default="without,with", help="comma-separated: without, with")
    parser.add_argument(
        "--no-stale-stats",
        dest="stale_stats",
        action="store_false",
        help="do not ANALYZE the (empty) job table before the burst",
    )
    parser.add_argument(
        "--explain", type=int, metavar="N", help="only show the fetch's plan with N ready jobs, then exit"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.explain:
        explain(args.explain)
    else:
        asyncio.run(amain(args))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
