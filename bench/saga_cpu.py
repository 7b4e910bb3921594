"""The worker's side of a create saga in one process, without HTTP nor the job queue's fetch: CPU and
wall time of ``SagaRunner.run`` per saga, A/B between checkouts.

Run: ``.venv/bin/python -m bench.saga_cpu [--n 200] [--rounds 6] [--base OTHER/.venv/bin/python]``

Each round starts this checkout's code (and, with ``--base``, the other checkout's, alternated, the
first of each pair alternating too) in a child process on a fresh core database and BYODB (``bench.saga``'s
databases). The child builds the service (``bootstrap.open_container``), accepts ``n`` creates through
``TableCommands.create_table`` and runs each one's saga at once with ``runner.run`` (as the job would,
with its job id), one at a time. Measured around ``runner.run`` only: wall time, the process's CPU
(every thread: the loop and the BYODB's threads) and the CPU of the two databases' server processes
(``/proc/<pid>/schedstat``, nanoseconds). The figures are medians of the per-saga values of a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, os, sys, time, uuid
from pathlib import Path
import psycopg
from schemasaga.bootstrap import open_container
from schemasaga.config import Settings

def backend_cpu(pids):
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9

async def main(n, core, core_db, byodb_db):
    async with open_container(Settings()) as c:
        async with await psycopg.AsyncConnection.connect(core, autocommit=True) as conn:
            async def job_of(op):
                cur = await conn.execute(
                    "SELECT id FROM procrastinate_jobs WHERE args ->> 'operation_id' = %s", (str(op),))
                return (await cur.fetchone())[0]
            async def pids():
                cur = await conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                    ([core_db, byodb_db],))
                return [r[0] for r in await cur.fetchall()]
            out = []
            for i in range(n + 10):
                accepted = await c.tables.create_table(
                    name=f"cpu_{uuid.uuid4().hex[:12]}", database="default", metadata={"actor": "bench"})
                job_id = await job_of(accepted.operation_id)
                backends = await pids()
                w0, c0, b0 = time.perf_counter(), time.process_time(), backend_cpu(backends)
                await c.runner.run(
                    table_id=accepted.table_id, operation_id=accepted.operation_id, job_id=job_id)
                w1, c1, b1 = time.perf_counter(), time.process_time(), backend_cpu(backends)
                if i >= 10:  # warm-up: pools, prepared statements, generic plans
                    out.append((w1 - w0, c1 - c0, b1 - b0))
                await asyncio.sleep(0.005)
            print(json.dumps(out))

asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
"""


def one(python: str, n: int) -> list[tuple[float, float, float]]:
    from bench.saga import BENCH_SECRET_KEY, db_conninfo, fresh_databases, sqlalchemy_url

    with fresh_databases("cpu") as (core, byodb):
        env = {
            **os.environ,
            "SCHEMASAGA_DATABASE_URL": db_conninfo(core),
            "SCHEMASAGA_BYODB_URL": sqlalchemy_url(byodb),
            "SCHEMASAGA_SECRET_KEY": BENCH_SECRET_KEY,
            "SCHEMASAGA_LOG_LEVEL": "WARNING",
            "SCHEMASAGA_DRIFT_SCAN_INTERVAL": "0",
        }
        spy = os.environ.get("SAGA_CPU_PYSPY")  # a py-spy raw profile of the child, to that file
        prefix = (
            [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "-r",
                "500",
                "--format",
                "raw",
                "--threads",
                "--gil",
                "-o",
                spy,
                "--",
            ]
            if spy
            else []
        )
        out = subprocess.run(
            [*prefix, python, "-c", CHILD, str(n), db_conninfo(core), core, byodb],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            cwd="/tmp",
        ).stdout
    last = [line for line in out.splitlines() if line.startswith("[")][-1]  # py-spy prints lines too
    return [tuple(x) for x in json.loads(last)]  # type: ignore[misc]


def summary(label: str, rows: list[tuple[float, float, float]]) -> str:
    wall, cpu, pg = (statistics.median(r[i] for r in rows) * 1000 for i in range(3))
    return (
        f"{label}: n={len(rows)} wall p50 {wall:.2f} ms, process CPU p50 {cpu:.2f} ms, "
        f"server CPU p50 {pg:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--base", help="the Python of another checkout, alternated with this one")
    args = parser.parse_args()
    runs = [("this", args.python)] + ([("base", args.base)] if args.base else [])
    for r in range(args.rounds):
        order = runs if r % 2 == 0 else runs[::-1]
        for label, python in order:
            rows = one(python, args.n)
            print(
                f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f} " + summary(label, rows),
                flush=True,
            )


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
