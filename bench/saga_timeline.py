"""Where one create saga's time goes: a time line from the server log and timestamps in the service.

Run: ``.venv/bin/python -m bench.saga_timeline [--n 30] [--python OTHER/.venv/bin/python] [--show 2]``

Starts ``schemasaga serve`` (with its in-process worker; ``--python``: another checkout's, to compare)
under ``bench/trace_launch.py`` on a fresh core database and BYODB (``bench.saga``'s), with
``log_min_duration_statement = 0`` set on those two databases only (``ALTER DATABASE``), then runs ``n``
creates one at a time, each followed by ``GET /v1/operations/{id}?wait=``. For every saga it merges

  * the client's timestamps (request sent, create answered, outcome answered),
  * the service's (``trace_launch``: unit of work, job fetch, BYODB thread hand-overs, ...),
  * every statement of the two databases from the PostgreSQL server log (start = logged end - duration),

and prints the median time line (ms from the request) of the events every saga has, a few sagas in
full, and the CPU per saga of the service and of the two databases' server processes.
The server log is read from ``--log`` (the local PostgreSQL's, as root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import stat
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from bench.saga import create, fresh_databases, new_name, running_service, server_url

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "bench" / "trace_launch.py"
LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\w+) \[(\d+)\] (\S*)@(\S*) LOG:  duration: ([\d.]+) ms  (.*)$"
)


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread of ``pid`` (the scheduler's nanoseconds, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def backends(dbnames: tuple[str, ...]) -> list[int]:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s)", (list(dbnames),)
        ).fetchall()
    return [int(r[0]) for r in rows]


def short(statement: str) -> str:
    s = " ".join(statement.split())
    s = re.sub(r"^(execute|bind|parse) [^:]*: ", r"\1: ", s)
    s = re.sub(r"'[0-9a-f-]{36}'", "'<uuid>'", s)
    s = re.sub(r"(lat|warm)_[0-9a-f]{12}", "<name>", s)
    return s[:90]


def read_log(path: Path, offset: int, dbs: dict[str, str]) -> list[tuple[float, float, str, str]]:
    """(start, end, role, statement) of every logged statement of ``dbs`` (name -> role)."""
    out = []
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read().decode("utf-8", "replace")
    for line in data.splitlines():
        m = LOG_LINE.match(line)
        if not m or m.group(5) not in dbs:
            continue
        end = datetime.strptime(m.group(1) + " +0000", "%Y-%m-%d %H:%M:%S.%f %z").timestamp()
        duration = float(m.group(6)) / 1000
        out.append((end - duration, end, f"{dbs[m.group(5)]}[{m.group(3)}]", short(m.group(7))))
    return out


def read_trace(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        t, thread, label = line.split("\t", 2)
        out.append((float(t), "loop" if thread == "MainThread" else "thread", label))
    return out


async def run(args: argparse.Namespace) -> None:
    log = Path(args.log)
    with fresh_databases("tl") as (core, byodb), tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(server_url(), autocommit=True) as admin:
            for name in () if args.plain else (core, byodb):
                admin.execute(
                    sql.SQL("ALTER DATABASE {} SET log_min_duration_statement = 0").format(
                        sql.Identifier(name)
                    )
                )
        trace = Path(tmp) / "trace.tsv"
        launcher = Path(tmp) / "schemasaga"
        launcher.write_text(f'#!/bin/sh\nexec "{args.python}" "{LAUNCH}" "$@"\n')
        launcher.chmod(launcher.stat().st_mode | stat.S_IEXEC)
        env = {"SAGA_TRACE_FILE": str(trace), "SCHEMASAGA_LOG_LEVEL": "WARNING"}
        executable = str(Path(args.python).parent / "schemasaga") if args.plain else str(launcher)
        async with (
            running_service(core, byodb, executable=executable, extra_env=env) as s,
            httpx.AsyncClient(base_url=s.base_url, timeout=30) as client,
        ):
            serve_pid = s.procs[0].pid
            for _ in range(5):  # warm-up: pools, prepared statements, the notices listener
                _t, op = await create(client, new_name("warm"))
                await client.get(f"/v1/operations/{op}", params={"wait": 10})
            await asyncio.sleep(0.3)
            pg_pids = backends((core, byodb))
            offset = log.stat().st_size
            trace_offset = len(trace.read_text().splitlines()) if trace.exists() else 0
            # The service's own background work (heartbeat, watchdog, pollers), to subtract.
            idle0, idle_t0 = cpu_seconds(serve_pid), time.monotonic()
            await asyncio.sleep(args.idle)
            idle_rate = (cpu_seconds(serve_pid) - idle0) / (time.monotonic() - idle_t0)
            spy = None
            if args.profile:
                spy = subprocess.Popen(
                    [
                        str(ROOT / ".venv" / "bin" / "py-spy"),
                        "record",
                        "-p",
                        str(serve_pid),
                        "-r",
                        "1000",
                        "--format",
                        "raw",
                        "-o",
                        args.profile,
                        "--threads",
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)
            cpu0, run_t0 = cpu_seconds(serve_pid), time.monotonic()
            pg0 = sum(cpu_seconds(p) for p in pg_pids)
            sagas: list[tuple[float, float, float]] = []
            for _ in range(args.n):
                t0 = time.time()
                _t, op = await create(client, new_name("lat"))
                t1 = time.time()
                r = await client.get(f"/v1/operations/{op}", params={"wait": 10})
                t2 = time.time()
                if r.json()["status"] != "completed":
                    raise RuntimeError(r.text)
                sagas.append((t0, t1, t2))
                await asyncio.sleep(args.gap)
            cpu = cpu_seconds(serve_pid) - cpu0 - idle_rate * (time.monotonic() - run_t0)
            pg_cpu = sum(cpu_seconds(p) for p in pg_pids) - pg0
            new_pg = set(backends((core, byodb))) - set(pg_pids)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=30)
            await asyncio.sleep(0.3)  # the log is written by the server processes: let it land
        statements = [] if args.plain else read_log(log, offset, {core: "core", byodb: "byodb"})
        marks = [] if args.plain else read_trace(trace)[trace_offset:]
    totals = [1000 * (t2 - t0) for t0, _t1, t2 in sagas]
    answers = [1000 * (t1 - t0) for t0, t1, _t2 in sagas]
    load = os.getloadavg()[0]
    print(
        f"{args.label or args.python}: {args.n} sagas, load {load:.1f}: request->outcome "
        f"p50 {statistics.median(totals):.1f} ms (min {min(totals):.1f}); create answered p50 "
        f"{statistics.median(answers):.1f} ms; serve CPU {1000 * cpu / args.n:.2f} ms/saga (idle "
        f"{1000 * idle_rate:.1f} ms/s subtracted); the databases' server processes "
        f"{1000 * pg_cpu / args.n:.2f} ms/saga ({len(pg_pids)} backends, {len(new_pg)} new)",
        flush=True,
    )
    if args.plain:
        return
    # Server time per saga by statement (the log's durations), within the sagas' windows.
    windows = [(t0 - 0.001, t2 + 0.02) for t0, _t1, t2 in sagas]
    by_key: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for start, end, role, what in statements:
        if any(a <= start <= b for a, b in windows):
            key = (
                f"{role.split('[')[0]}: {re.sub(r'^(parse|bind|execute)(: | _pg3_[0-9]+: )?', '', what)[:70]}"
            )
            phase = what.split(":")[0].split(" ")[0]
            by_key[f"{key} [{phase}]"] += end - start
            count[f"{key} [{phase}]"] += 1
    total = sum(by_key.values())
    print(
        f"\n--- server time per saga, from the log: {1000 * total / args.n:.2f} ms; statements per saga: "
        f"{sum(count.values()) / args.n:.1f}"
    )
    for key, seconds in by_key.most_common(25):
        print(f"{1000 * seconds / args.n:7.3f} ms  x{count[key] / args.n:4.1f}  {key}")
    # One time line per saga: events between its request and its outcome (plus 20 ms), keyed by what and
    # how many times it happened before in the same saga, so that the keys line up between sagas.
    lines: list[list[tuple[float, str]]] = []
    for t0, t1, t2 in sagas:
        ev: list[tuple[float, str]] = [
            (0.0, "client: POST /table/create sent"),
            ((t1 - t0) * 1000, "client: create answered"),
            ((t2 - t0) * 1000, "client: outcome answered"),
        ]
        for start, end, role, what in statements:
            if t0 - 0.001 <= start <= t2 + 0.02:
                ev.append(
                    ((start - t0) * 1000, f"{role.split('[')[0]}: {what} ({1000 * (end - start):.2f} ms)")
                )
        for t, where, label in marks:
            if t0 - 0.001 <= t <= t2 + 0.02:
                ev.append(((t - t0) * 1000, f"[{where}] {label}"))
        ev.sort()
        lines.append(ev)
    for ev in lines[: args.show]:
        print("\n--- one saga (ms from the request)")
        for t, what in ev:
            print(f"{t:8.2f}  {what}")
    # Median of each event (without its duration) across sagas.
    keyed: dict[str, list[float]] = {}
    for ev in lines:
        seen: Counter[str] = Counter()
        for t, what in ev:
            key = re.sub(r" \([\d.]+ ms\)$", "", what)
            seen[key] += 1
            keyed.setdefault(f"{key} #{seen[key]}", []).append(t)
    print(f"\n--- median time line over {len(lines)} sagas (events in at least 80% of them)")
    rows = sorted((statistics.median(v), k, len(v)) for k, v in keyed.items() if len(v) >= 0.8 * len(lines))
    for t, k, count in rows:
        print(f"{t:8.2f}  {k}" + ("" if count == len(lines) else f"  (in {count})"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between sagas")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--log", default="/var/log/postgresql/postgresql-15-main.log")
    parser.add_argument("--profile", help="py-spy raw output file (the serve process, during the sagas)")
    parser.add_argument("--plain", action="store_true", help="no tracing, no statement log: latency and CPU")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle CPU measured first")
    parser.add_argument("--label", default="")
    parser.add_argument("--show", type=int, default=1, help="sagas printed in full")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
