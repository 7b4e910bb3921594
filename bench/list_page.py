"""``GET /v1/tables``: the cost of a page of 100 tables of the full-size shape (issue 12: p95 <= 20 ms).

Run: ``.venv/bin/python -m bench.list_page`` (``make bench-list``); ``--tables N`` (default 101: a first
and a deep page of 100), ``--events-per-table E`` (default 99, as ``bench.scale`` at full size: about 36
columns a table), ``--reps R`` requests per measure, ``--baseline PATH`` another checkout's
``schemasaga`` (main's, say) answering beside this one on the same core database, request by request in
turn, ``--profile FILE`` py-spy (raw format) on this checkout's ``serve`` while it answers first pages.

The core database is filled as ``bench.scale`` fills it (one template table's events copied N times
server-side, then ``projections rebuild``), and ``schemasaga serve`` answers over HTTP. Measured: the
first page and a deep page of ``/v1/tables?limit=100``, ``show`` of one table and ``/healthz`` (the floor:
the HTTP stack and one query). The answers of the two services are compared byte for byte first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.saga import ROOT, db_conninfo, fresh_databases, running_service, sqlalchemy_url
from bench.scale import Timing, context, fill, first_value, one, rebuild
from schemasaga.coredb import migrations

PREFIX = "list_speed"  # the databases' names start with the branch's


def measures(c: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("tables, first page", "/v1/tables?limit=100"),
        ("tables, deep page", f"/v1/tables?limit=100&after={c['deep']}"),
        ("show", f"/v1/tables/{c['some']}"),
        ("healthz", "/healthz"),
        # Page after page through the whole list, from the start again at its end: with more tables than
        # the service keeps written (2,048), each page is written anew.
        ("tables, walking every page", WALK),
    ]


WALK = "walk"


async def same_answers(urls: list[str], paths: list[str]) -> None:
    """Every service answers each path with the same status, body bytes and Link header."""
    answers: dict[str, list[tuple[int, bytes, str | None]]] = {}
    for url in urls:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for path in paths:
                r = await client.get(path)
                answers.setdefault(path, []).append((r.status_code, r.content, r.headers.get("link")))
    for path, got in answers.items():
        assert all(g == got[0] for g in got), f"the services answer {path} differently"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far (all its threads): unlike the answer's time, it
    does not grow with what else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    urls: list[str], pids: list[int], c: dict[str, Any], reps: int
) -> tuple[list[dict[str, Timing]], list[dict[str, float]]]:
    """The timings by measure for each service, and its server's CPU milliseconds per request."""
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls]
    out: list[dict[str, Timing]] = [{} for _ in urls]
    cpu: list[dict[str, float]] = [{} for _ in urls]
    try:
        for client in clients:  # warm up
            for i in range(20):
                await one(client, ("GET", measures(c)[i % 2][1], None))
        for name, path in measures(c):
            values: list[list[float]] = [[] for _ in urls]
            cpu_before = [cpu_seconds(pid) for pid in pids]
            cursors: list[str | None] = [None for _ in urls]
            for i in range(reps):
                # Alternate who goes first, so that neither always follows the other's request.
                order = range(len(urls)) if i % 2 == 0 else reversed(range(len(urls)))
                for k in order:
                    if path != WALK:
                        values[k].append(await one(clients[k], ("GET", path, None)))
                        continue
                    params = {"limit": 100} if cursors[k] is None else {"limit": 100, "after": cursors[k]}
                    started = time.perf_counter()
                    r = await clients[k].get("/v1/tables", params=params)
                    values[k].append(time.perf_counter() - started)
                    assert r.status_code == 200, r.text
                    cursors[k] = r.json()["next_after"]
            for k in range(len(urls)):
                out[k][name] = Timing(values[k])
                cpu[k][name] = (cpu_seconds(pids[k]) - cpu_before[k]) / reps * 1000
    finally:
        for client in clients:
            await client.aclose()
    return out, cpu


async def known(url: str) -> None:
    """Until the service knows the database registered by the other one (it reloads on a miss)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(100):
            r = await client.get("/v1/tables?limit=1")
            if r.json()["items"][0]["engine"] is not None:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the baseline never learnt of the registered database")


async def profile(url: str, pid: int, path: str, out: str, seconds: float) -> int:
    """py-spy on ``pid`` while one client asks ``path`` for ``seconds``; the requests made."""
    spy_bin = str(Path(sys.executable).parent / "py-spy")
    spy = subprocess.Popen(
        [spy_bin, "record", "-p", str(pid), "-o", out, "-f", "raw", "-r", "200", "-d", str(int(seconds) + 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # py-spy attached
    done = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await one(client, ("GET", path, None))
            done += 1
    spy.wait()
    return done


async def amain(args: argparse.Namespace) -> None:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    print(
        f"list_page: {args.tables:,} tables, {started}, load average {load[0]:.1f} {load[1]:.1f}", flush=True
    )
    with (
        fresh_databases("list", prefix=PREFIX) as (core, byodb),
        fresh_databases("bulk", prefix=PREFIX) as (bulk, _),
    ):
        info = db_conninfo(core)
        migrations.upgrade(info)
        written, _ = fill(info, args.tables, args.tables * args.events_per_table, small=0, big=0)
        await rebuild(info, 1000)
        c = await context(info)
        columns = await _columns(info)
        print(f"filled: {written:,} events, {columns} columns a table (the hot table apart)", flush=True)
        async with running_service(core, byodb) as this:
            # The tables' database registered (an empty one: a list does not look there), as in
            # production: an unknown one would answer engine null and reload the registry on each list.
            async with httpx.AsyncClient(base_url=this.base_url, timeout=60) as client:
                body = {"name": "bulk", "url": sqlalchemy_url(bulk)}
                r = await client.post("/v1/databases", json=body)
                assert r.status_code == 201, r.text
            if args.profile:
                n = await profile(
                    this.base_url, this.procs[0].pid, measures(c)[0][1], args.profile, args.seconds
                )
                print(f"py-spy: {n} first pages in {args.seconds:.0f} s -> {args.profile}")
            if args.baseline:
                async with running_service(core, byodb, executable=args.baseline) as base:
                    urls = [this.base_url, base.base_url]
                    await known(base.base_url)
                    await same_answers(urls, [p for _, p in measures(c)[:3]])
                    print("answers: byte-equal (first page, deep page, show)")
                    pids = [this.procs[0].pid, base.procs[0].pid]
                    timings, cpu = await measure(urls, pids, c, args.reps)
            else:
                timings, cpu = await measure([this.base_url], [this.procs[0].pid], c, args.reps)
    load = os.getloadavg()
    print()
    head = "| request | this branch p50 / p95 (ms) | CPU ms/request |"
    if args.baseline:
        head += " baseline p50 / p95 (ms) | CPU ms/request | p50 / p95 / CPU ratio |"
    print(head)
    print("|---|---|---|" + ("---|---|---|" if args.baseline else ""))
    for name, t in timings[0].items():
        line = f"| {name} | {t.p50:.1f} / {t.p95:.1f} | {cpu[0][name]:.1f} |"
        if args.baseline:
            b, bc = timings[1][name], cpu[1][name]
            ratios = f"{t.p50 / b.p50:.2f}x / {t.p95 / b.p95:.2f}x / {cpu[0][name] / bc:.2f}x"
            line += f" {b.p50:.1f} / {b.p95:.1f} | {bc:.1f} | {ratios} |"
        print(line)
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f}; {args.reps} requests per measure")


async def _columns(conninfo: str) -> int:
    value: int = await first_value(
        conninfo, "SELECT max(jsonb_array_length(columns)) FROM rm_tables WHERE name <> 't0'"
    )
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, default=101)
    parser.add_argument("--events-per-table", type=int, default=99)
    parser.add_argument("--reps", type=int, default=200, help="requests per measure and service")
    parser.add_argument("--baseline", default="", help="another checkout's schemasaga executable")
    parser.add_argument("--profile", default="", help="py-spy raw output file (py-spy in this venv)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to profile")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
