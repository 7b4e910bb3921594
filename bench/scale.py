"""schemasaga at the size of a platform: a core database with N tables and M events, against the same
requests on an (almost) empty one.

Run: ``.venv/bin/python -m bench.scale`` (``SCHEMASAGA_BENCH_SCALE=quick``: 10,000 tables / 200,000
events; default: 100,000 / 10,000,000; ``--tables N --events M`` override; ``--reps R`` requests per
measure).

The fill is server-side (``generate_series``), not the API: one template table's events (created,
confirmed, then column additions, each accepted, its step completed and confirmed), made by the domain's
own aggregate with placeholder ids, are copied N times with each table's ids and name substituted, plus one
"hot" table with 1,000 events (for time travel and the paged stream). The read models are then built by
``projections rebuild`` (the online rebuild: measured, events/s). The first tables go to two registered
BYODBs on the local PostgreSQL (1,000 and up to 10,000 tables, created there physically in the tables'
shape), the rest to an unregistered database name (never scanned).

Measured, each against the same request on a core database holding the hot table and 100 others (the
pages are as long; ratio), the two services answering in turn, request by request:
``/v1/tables`` first page and a deep page, show, time travel of the hot table (``?at_version=500``), its
events paged (100 a page, 5 pages from the middle), the global log paged (5 pages from the middle), a
new table's request-to-synced latency (``POST /v1/tables?wait=20``); on the filled database only: the
rebuild's events/s, ``schemasaga drift`` on each BYODB (tables/s and peak RSS of the process, 1,000 against
10,000 tables) and ``schemasaga verify``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from bench.saga import (
    BENCH_SECRET_KEY,
    ROOT,
    SCHEMASAGA,
    db_conninfo,
    fresh_databases,
    running_service,
    server_url,
    sqlalchemy_url,
)
from schemasaga.coredb import migrations
from schemasaga.coredb.rebuild import OnlineRebuild
from schemasaga.domain.columns import Column, ColumnType
from schemasaga.domain.table import Table
from schemasaga.eventstore import EventStore
from schemasaga.eventstore.jsoncodec import dumps

TABLE = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
NAME = "tplname"
DATABASE = "tpldb"
HOT_EVENTS = 1000
SMALL, BIG = 1000, 10000
BASELINE_TABLES = 101
SNAPSHOT_EVERY = 50  # the service's default (SCHEMASAGA_SNAPSHOT_EVERY)


def _op(k: int) -> str:
    return f"bbbbbbbb-bbbb-4bbb-8bbb-{k:012d}"


def template(changes: int) -> tuple[list[tuple[int, str, str, str]], list[tuple[int, str, str]]]:
    """(version, event type, data as JSON, the placeholder of its operation id) of one table's events, and
    the snapshots the service would have saved of it (every ``SNAPSHOT_EVERY`` events: version, state as
    JSON, the placeholder of the operation in flight then, if any)."""
    table = Table.create(
        table_id=uuid.UUID(TABLE), name=NAME, database=DATABASE, operation_id=uuid.UUID(_op(0))
    )
    table.complete_step(uuid.UUID(_op(0)), "create_table")
    table.confirm(uuid.UUID(_op(0)))
    for k in range(1, changes + 1):
        op = uuid.UUID(_op(k))
        table.add_column(Column(f"c{k}", ColumnType.INTEGER), operation_id=op)
        table.complete_step(op, "add_column")
        table.confirm(op)
    events = [
        (v, e.type_name(), dumps(e.to_data()), str(e.operation_id)) for v, e in enumerate(table.changes)
    ]
    snapshots = []
    folded = Table(table_id=table.table_id)
    for v, e in enumerate(table.changes):
        folded.apply(e)
        if (v + 1) % SNAPSHOT_EVERY == 0:
            state = dumps(folded.to_snapshot())
            snapshots.append(
                (v, state, next((_op(k) for k in range(changes + 1) if _op(k) in state), _op(0)))
            )
    return events, snapshots


FILL_EVENTS = """
INSERT INTO event_store_events (event_id, event_type, data, metadata, created_at)
SELECT md5('e' || i || '.' || t.version)::uuid, t.event_type,
       replace(replace(replace(replace(t.data, %(table)s, md5('t' || i)::uuid::text),
                               'bbbbbbbb-bbbb-4bbb-8bbb-', bench_op_prefix(i)),
                       %(name)s, 't' || i),
               %(database)s, CASE WHEN i = 0 THEN %(rest_db)s WHEN i <= %(small)s THEN %(small_db)s
                                  WHEN i <= %(small)s + %(big)s THEN %(big_db)s ELSE %(rest_db)s END)::jsonb,
       '{}'::jsonb, now() - interval '1 day' + t.version * interval '1 second'
FROM generate_series(%(first)s::int, %(last)s::int) i CROSS JOIN bench_template t
ORDER BY i, t.version
"""
FILL_SNAPSHOTS = """
INSERT INTO event_store_snapshots (stream, version, state)
SELECT 'Table$' || md5('t' || i)::uuid, t.version,
       replace(replace(replace(replace(t.data, %(table)s, md5('t' || i)::uuid::text),
                               'bbbbbbbb-bbbb-4bbb-8bbb-', bench_op_prefix(i)),
                       %(name)s, 't' || i),
               %(database)s, CASE WHEN i = 0 THEN %(rest_db)s WHEN i <= %(small)s THEN %(small_db)s
                                  WHEN i <= %(small)s + %(big)s THEN %(big_db)s ELSE %(rest_db)s END)::jsonb
FROM generate_series(%(first)s::int, %(last)s::int) i CROSS JOIN bench_snapshots t
"""
FILL_STREAMS = """
INSERT INTO event_store_events_in_streams (stream, version, event_id, created_at)
SELECT 'Table$' || md5('t' || i)::uuid, t.version, md5('e' || i || '.' || t.version)::uuid,
       now() - interval '1 day' + t.version * interval '1 second'
FROM generate_series(%(first)s::int, %(last)s::int) i CROSS JOIN bench_template t
"""


def fill(
    conninfo: str,
    tables: int,
    events: int,
    *,
    small: int,
    big: int,
    names: tuple[str, str, str] = ("scale_small", "scale_big", "bulk"),
) -> tuple[int, float]:
    """N tables (table 0 the hot one) and about M events; the events written and the seconds taken.
    Tables 1 to ``small`` go to database ``names[0]``, the next ``big`` to ``names[1]``, the others to
    ``names[2]``."""
    per_table = max(3, events // max(tables, 1))
    changes = max(0, (per_table - 3) // 3)
    started = time.monotonic()
    written = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE UNLOGGED TABLE bench_template (version int, event_type text, data text, op text)"
        )
        conn.execute("CREATE UNLOGGED TABLE bench_snapshots (version int, data text, op text)")
        # The operations of table i: ids that share a prefix of its own, so that one replace() renames
        # every operation an event or a snapshot names.
        conn.execute(
            "CREATE FUNCTION bench_op_prefix(i int) RETURNS text LANGUAGE sql IMMUTABLE AS $$ "
            "SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-8' "
            "|| substr(h, 18, 3) || '-' FROM md5('o' || i) AS h $$"
        )
        for first, last, (shape, snapshots) in (
            (0, 0, template((HOT_EVENTS - 3) // 3)),
            (1, tables - 1, template(changes)),
        ):
            if last < first:
                continue
            conn.execute("TRUNCATE bench_template, bench_snapshots")
            with conn.cursor().copy("COPY bench_template FROM STDIN") as copy:
                for row in shape:
                    copy.write_row(row)
            with conn.cursor().copy("COPY bench_snapshots FROM STDIN") as copy:
                for snapshot in snapshots:
                    copy.write_row(snapshot)
            params = {
                "table": TABLE,
                "name": NAME,
                "database": DATABASE,
                "small": small,
                "big": big,
                "small_db": names[0],
                "big_db": names[1],
                "rest_db": names[2],
            }
            # Chunks of 10,000 tables, each its own transaction.
            for lo in range(first, last + 1, 10000):
                hi = min(last, lo + 9999)
                conn.execute(FILL_EVENTS, {**params, "first": lo, "last": hi})
                conn.execute(FILL_STREAMS, {"first": lo, "last": hi})
                conn.execute(FILL_SNAPSHOTS, {**params, "first": lo, "last": hi})
                written += (hi - lo + 1) * len(shape)
        conn.execute("DROP TABLE bench_template, bench_snapshots")
        conn.execute("DROP FUNCTION bench_op_prefix(int)")
        conn.execute("VACUUM ANALYZE")
    return written, time.monotonic() - started


def physical_tables(dbname: str, first: int, count: int, changes: int) -> float:
    """The tables ``t<first>``... in the BYODB, in the shape their events say; seconds taken."""
    started = time.monotonic()
    extra = "".join(f", c{k} integer" for k in range(1, changes + 1))
    with psycopg.connect(db_conninfo(dbname), autocommit=True) as conn:
        for lo in range(first, first + count, 500):
            with conn.transaction():
                for i in range(lo, min(first + count, lo + 500)):
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {} (id integer PRIMARY KEY NOT NULL, name text, "
                            "created_at timestamp, updated_at timestamp" + extra + ")"
                        ).format(sql.Identifier(f"t{i}"))
                    )
    return time.monotonic() - started


# -- measures ------------------------------------------------------------------------------------


@dataclass
class Timing:
    values: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.values) * 1000

    @property
    def p95(self) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


Make = Callable[[dict[str, Any], int], tuple[str, str, Any]]
MEASURES: list[tuple[str, int, Make]] = [
    ("tables, first page", 1, lambda c, i: ("GET", "/v1/tables?limit=100", None)),
    ("tables, deep page", 1, lambda c, i: ("GET", f"/v1/tables?limit=100&after={c['deep']}", None)),
    ("show", 1, lambda c, i: ("GET", f"/v1/tables/{c['some']}", None)),
    (
        "time travel (at_version=500 of 1,000)",
        1,
        lambda c, i: ("GET", f"/v1/tables/{c['hot']}?at_version={HOT_EVENTS // 2}", None),
    ),
    (
        "a table's events, a page of 100",
        1,
        lambda c, i: (
            "GET",
            f"/v1/tables/{c['hot']}/events?limit=100&after={HOT_EVENTS // 2 + 100 * (i % 4)}",
            None,
        ),
    ),
    ("global log, a page of 100", 1, lambda c, i: ("GET", f"/v1/events?limit=100&after={c['middle']}", None)),
    (
        "new table, request to synced",
        20,
        lambda c, i: ("POST", "/v1/tables?wait=20", {"name": f"fresh_{uuid.uuid4().hex[:10]}"}),
    ),
]


async def http_measures(targets: list[tuple[str, str]], reps: int) -> list[dict[str, Timing]]:
    """Each measure on every target (base URL, core database), request by request in turn, so that the
    machine's load falls on all of them alike; for each target, the timings by measure."""
    contexts = [await context(core) for _, core in targets]
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url, _ in targets]
    out: list[dict[str, Timing]] = [{} for _ in targets]
    try:
        for client, c in zip(clients, contexts, strict=True):  # warm up
            for i in range(20):
                await one(client, MEASURES[0][2](c, i))
        for name, divisor, make in MEASURES:
            values: list[list[float]] = [[] for _ in targets]
            for i in range(max(5, reps // divisor)):
                for k, (client, c) in enumerate(zip(clients, contexts, strict=True)):
                    values[k].append(await one(client, make(c, i)))
            for k in range(len(targets)):
                out[k][name] = Timing(values[k])
    finally:
        for client in clients:
            await client.aclose()
    return out


async def one(client: httpx.AsyncClient, request: tuple[str, str, Any]) -> float:
    method, url, body = request
    started = time.perf_counter()
    r = await client.request(method, url, json=body)
    elapsed = time.perf_counter() - started
    assert r.status_code in (200, 201, 202), (url, r.status_code, r.text)
    return elapsed


async def context(core: str) -> dict[str, Any]:
    """The ids the requests name: the hot table, another one, a table 9/10 down the list (the `after` of
    the deep page), an event in the middle of the log."""
    return {
        "hot": await first_value(core, "SELECT table_id FROM rm_tables WHERE name = 't0'"),
        "some": await first_value(
            core, "SELECT table_id FROM rm_tables WHERE name <> 't0' ORDER BY name LIMIT 1"
        ),
        "deep": await first_value(
            core,
            # 9/10 down the list, with a full page after it (the baseline's: its first table)
            "SELECT table_id FROM rm_tables ORDER BY table_id "
            "OFFSET (SELECT greatest(0, least(count(*) * 9 / 10, count(*) - 101)) FROM rm_tables) LIMIT 1",
        ),
        "middle": await first_value(
            core,
            "SELECT event_id FROM event_store_events ORDER BY position "
            "OFFSET (SELECT count(*) / 2 FROM event_store_events) LIMIT 1",
        ),
    }


async def first_value(conninfo: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        row = await (await conn.execute(query)).fetchone()
        assert row is not None, query
        return row[0]


async def rebuild(conninfo: str, batch_size: int) -> tuple[int, float]:
    """``projections rebuild`` (the online rebuild, in this process): events, seconds."""
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=4) as pool:
        out = await OnlineRebuild(conninfo, EventStore(pool), batch_size=batch_size).run()
    return out.events, out.seconds


def cli_run(env: dict[str, str], *args: str, program: str = SCHEMASAGA) -> tuple[float, int, int, str]:
    """Run ``schemasaga ARGS``: seconds, exit status, peak RSS in MiB, last line of its output."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [program, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in output.splitlines() if line.strip()]
    return time.monotonic() - started, proc.returncode, usage.ru_maxrss // 1024, lines[-1] if lines else ""


# -- main ----------------------------------------------------------------------------------------


def sizes(args: argparse.Namespace) -> tuple[int, int]:
    quick = os.environ.get("SCHEMASAGA_BENCH_SCALE", "") == "quick"
    tables = args.tables or (10_000 if quick else 100_000)
    events = args.events or (200_000 if quick else 10_000_000)
    return tables, events


async def amain(args: argparse.Namespace) -> None:
    tables, events = sizes(args)
    small = min(SMALL, max(0, tables - 1))
    big = min(BIG, max(0, tables - 1 - small))
    print(f"scale: {tables:,} tables, {events:,} events (load average {os.getloadavg()[0]:.1f})", flush=True)
    with fresh_databases("scale") as (core, byodb), fresh_databases("scalebyodb") as (small_db, big_db):
        core_info = db_conninfo(core)
        migrations.upgrade(core_info)
        written, seconds = fill(core_info, tables, events, small=small, big=big)
        print(
            f"fill: {written:,} events of {tables:,} tables in {seconds:.1f} s ({written / seconds:,.0f}/s)"
        )
        ev, secs = await rebuild(core_info, args.batch_size)
        print(
            f"projections rebuild: {ev:,} events in {secs:.1f} s = {ev / secs:,.0f} events/s "
            "(target >= 100,000)"
        )
        changes = max(0, (max(3, events // tables) - 3) // 3)
        t_small = physical_tables(small_db, 1, small, changes)
        t_big = physical_tables(big_db, small + 1, big, changes)
        print(f"BYODB tables created: {small:,} in {t_small:.1f} s, {big:,} in {t_big:.1f} s", flush=True)

        with fresh_databases("scaleempty") as (empty_core, empty_byodb):
            empty_info = db_conninfo(empty_core)
            migrations.upgrade(empty_info)
            # 101 tables: a page of 100 is as long as on the filled database (the same answer's size).
            fill(empty_info, BASELINE_TABLES, BASELINE_TABLES * max(3, events // tables), small=0, big=0)
            await rebuild(empty_info, args.batch_size)
            async with running_service(empty_core, empty_byodb) as e, running_service(core, byodb) as s:
                async with httpx.AsyncClient(base_url=s.base_url, timeout=60) as client:
                    for name, dbname in (("scale_small", small_db), ("scale_big", big_db)):
                        body = {"name": name, "url": sqlalchemy_url(dbname)}
                        r = await client.post("/v1/databases", json=body)
                        assert r.status_code == 201, r.text
                empty, full = await http_measures(
                    [(e.base_url, empty_info), (s.base_url, core_info)], args.reps
                )
        env = {
            **os.environ,
            "SCHEMASAGA_DATABASE_URL": core_info,
            "SCHEMASAGA_BYODB_URL": sqlalchemy_url(byodb),
            "SCHEMASAGA_SECRET_KEY": BENCH_SECRET_KEY,
            "SCHEMASAGA_LOG_LEVEL": "WARNING",
        }
        drifts = {}
        for name, count in (("scale_small", small), ("scale_big", big)):
            drifts[name] = (count, *cli_run(env, "drift", "--database", name))
        verify = cli_run(env, "verify")

    print()
    print(
        f"| request | {BASELINE_TABLES} tables p50 / p95 (ms) | {tables:,} tables p50 / p95 (ms) "
        "| p95 ratio |"
    )
    print("|---|---|---|---|")
    for name, t in full.items():
        e = empty[name]
        print(f"| {name} | {e.p50:.1f} / {e.p95:.1f} | {t.p50:.1f} / {t.p95:.1f} | {t.p95 / e.p95:.2f}x |")
    print()
    for name, (count, secs, status, rss, last) in drifts.items():
        print(
            f"drift {name}: {count:,} tables in {secs:.1f} s = {count / secs:,.0f} tables/s, "
            f"peak RSS {rss} MiB, exit {status}: {last}"
        )
    (n1, s1, *_), (n2, s2, *_) = drifts["scale_small"], drifts["scale_big"]
    if n2 > n1 and s2 > s1:
        print(
            "drift, marginal rate (process start-up and empty scans cancel out): "
            f"{(n2 - n1) / (s2 - s1):,.0f} tables/s"
        )
    secs, status, rss, last = verify
    print(f"verify: {secs:.1f} s, peak RSS {rss} MiB, exit {status}: {last}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; server {server_url()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, default=0)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--reps", type=int, default=200, help="requests per measure")
    parser.add_argument("--batch-size", type=int, default=1000, help="the rebuild's streams per batch")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
