"""``schemasaga drift`` on one BYODB of K tables, against a small core database and a big one.

Run: ``.venv/bin/python -m bench.drift`` (default: a BYODB of 10,000 tables; a small core holding just
them, 10,001 tables, and a big core of 100,000 tables; 20 events per table; ``--tables``, ``--byodb``,
``--events-per-table`` override). Both cores are filled as :mod:`bench.scale` fills (server-side copies of
one table's history, snapshots every 50 events) with the same tables 1..K in database ``default``, so the
two scans compare the same tables with the same live schema: only the size of the core differs.

Each round runs the scan of ``schemasaga drift --database default`` on each core in turn, each in a new
process (``--scan``: the same calls, the scan timed apart from the process's start-up; tables/s, peak RSS).
With ``--code LABEL=DIR`` (a ``src`` folder of another checkout, e.g. ``git archive main src`` unpacked;
repeatable) it runs that code's scan too, alternately, on the same databases: a before/after in one run.
``--keep`` leaves the databases (named ``drift_speed_*``) for profiling and prints their names;
``--reuse SMALL BIG BYODB`` measures on kept ones without filling again (``-`` for a core to leave out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

from bench.saga import BENCH_SECRET_KEY, ROOT, db_conninfo, server_url, sqlalchemy_url
from bench.scale import cli_run, fill, physical_tables, rebuild
from schemasaga.coredb import migrations

PYTHON = str(ROOT / ".venv" / "bin" / "python")


@contextlib.contextmanager
def databases(names: list[str], *, create: bool, keep: bool) -> Iterator[list[str]]:
    with psycopg.connect(server_url(), autocommit=True) as admin:
        for name in names if create else []:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield names
    finally:
        if not keep:
            with psycopg.connect(server_url(), autocommit=True) as admin:
                for name in names:
                    admin.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                    )


async def prepare(core: str, tables: int, byodb: int, per_table: int, batch_size: int) -> str:
    info = db_conninfo(core)
    migrations.upgrade(info)
    written, secs = fill(
        info, tables, tables * per_table, small=0, big=byodb, names=("unused", "default", "bulk")
    )
    _, rsecs = await rebuild(info, batch_size)
    return f"{core}: {written:,} events of {tables:,} tables filled in {secs:.1f} s, rebuilt in {rsecs:.1f} s"


def drift_once(core: str, byodb: str, baseline_src: str | None) -> tuple[float, float, int, int, str]:
    """One scan in a new process, as ``schemasaga drift --database default`` runs it: wall seconds (with
    the process's start-up, a few seconds on a loaded machine), the scan's own seconds, exit status, peak
    RSS in MiB, the report's line."""
    env = {
        **os.environ,
        "SCHEMASAGA_DATABASE_URL": db_conninfo(core),
        "SCHEMASAGA_BYODB_URL": sqlalchemy_url(byodb),
        "SCHEMASAGA_SECRET_KEY": BENCH_SECRET_KEY,
        "SCHEMASAGA_LOG_LEVEL": "WARNING",
    }
    if baseline_src is not None:
        env["PYTHONPATH"] = baseline_src
    wall, status, rss, last = cli_run(env, "-m", "bench.drift", "--scan", program=PYTHON)
    scan = float(last.split()[1]) if last.startswith("scan ") else float("nan")
    return wall, scan, status, rss, last


def scan() -> None:
    """What ``schemasaga drift --database default`` does, with the scan timed apart from the start-up."""
    from schemasaga.bootstrap import open_container
    from schemasaga.cli.base import settings
    from schemasaga.services.verify import scan_databases

    async def run() -> int:
        async with open_container(settings(), migrate=False) as c:
            started = time.perf_counter()
            scans = await scan_databases(c.drift, ["default"])
            secs = time.perf_counter() - started
        (report,) = scans.reports
        print(f"scan {secs:.3f} s: {report.checked} checked, {len(report.drifted)} drifted")
        return 0 if scans.clean else 1

    sys.exit(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, default=100_000, help="tables in the big core")
    parser.add_argument("--byodb", type=int, default=10_000, help="tables in the BYODB (and the small core)")
    parser.add_argument("--events-per-table", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000, help="the rebuild's streams per batch")
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also run the code of this src folder, labelled (repeatable)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the databases for profiling")
    parser.add_argument("--reuse", nargs=3, metavar=("SMALL", "BIG", "BYODB"), default=None)
    parser.add_argument("--scan", action="store_true", help=argparse.SUPPRESS)  # one measured scan
    args = parser.parse_args()
    if args.scan:
        scan()

    tag = uuid.uuid4().hex[:8]
    names = args.reuse or [f"drift_speed_small_{tag}", f"drift_speed_big_{tag}", f"drift_speed_byodb_{tag}"]
    sizes = (
        ""
        if args.reuse
        else (
            f"BYODB {args.byodb:,} tables; cores of {args.byodb + 1:,} and {args.tables:,} tables, "
            f"{args.events_per_table} events each "
        )
    )
    print(f"drift: {sizes}(load average {os.getloadavg()[0]:.1f})", flush=True)
    with databases(names, create=args.reuse is None, keep=args.keep or args.reuse is not None) as (
        small,
        big,
        byodb,
    ):
        if args.reuse is None:
            for core, n in ((small, args.byodb + 1), (big, args.tables)):
                print(
                    asyncio.run(prepare(core, n, args.byodb, args.events_per_table, args.batch_size)),
                    flush=True,
                )
            changes = max(0, (args.events_per_table - 3) // 3)
            secs = physical_tables(byodb, 1, args.byodb, changes)
            print(
                f"BYODB: {args.byodb:,} tables of {4 + changes} columns created in {secs:.1f} s", flush=True
            )
        if args.keep:
            print(f"kept: --reuse {small} {big} {byodb}", flush=True)
        codes: list[tuple[str, str | None]] = [("this", None)]
        codes += [(label, src) for label, _, src in (c.partition("=") for c in args.code)]
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in range(args.rounds):
            for label, core in (("small core", small), ("big core", big)):
                if core == "-":  # --reuse without it
                    continue
                for code, src in codes:
                    wall, secs, status, rss, last = drift_once(core, byodb, src)
                    load = os.getloadavg()[0]
                    results.setdefault((label, code), []).append((wall, secs))
                    print(
                        f"round {r + 1} {label} {code}: scan {args.byodb / secs:,.0f} tables/s "
                        f"({secs:.1f} s; {wall:.1f} s with start-up), peak RSS {rss} MiB, exit {status}, "
                        f"load {load:.1f}: {last}",
                        flush=True,
                    )
                    if status != 0:
                        sys.exit(f"drift failed on {core}")
        print()
        print("| core | code | scan, median s | scan tables/s | with start-up, median s | tables/s |")
        print("|---|---|---|---|---|---|")
        for (label, code), values in results.items():
            w = statistics.median(v[0] for v in values)
            m = statistics.median(v[1] for v in values)
            print(f"| {label} | {code} | {m:.1f} | {args.byodb / m:,.0f} | {w:.1f} | {args.byodb / w:,.0f} |")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
