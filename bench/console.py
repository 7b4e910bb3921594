"""Render time of every console page with 10,000 tables and 100,000 events in the core database.

Run: ``.venv/bin/python -m bench.console [--tables 10000] [--rounds 40]`` (``make bench-console``)

Starts the real ``schemasaga serve`` (with its worker) on fresh databases (see ``bench.saga``), makes one
real table through the API (created, then two columns added: its events, operations and read model
are what the service writes), then copies it directly in the core database, in SQL, until there are
``--tables`` tables: each copy with its own ids and name and the template's events (data, metadata,
types, times shifted by its number of milliseconds), stream rows and operations. The API and the pages
then read them as they read their own.

Each page is fetched ``--rounds`` times (one client, one request at a time, after two warm-ups) and
its p50 and p95 reported; the target is p95 < 100 ms. The baseline measured in the same run: the
service's ``/healthz`` (one query on the core), so a slower machine shows in both.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import quote

import httpx
import psycopg
from psycopg import sql

from bench.saga import fresh_databases, ms, pct, running_service

COLUMNS = ("age", "motto")
TYPES = ("integer", "text")


async def template_table(client: httpx.AsyncClient) -> str:
    r = await client.post("/v1/tables", json={"name": "tpl"}, params={"wait": 20})
    assert r.status_code == 200, r.text
    table_id = str(r.json()["table_id"])
    for name, kind in zip(COLUMNS, TYPES, strict=True):
        r = await client.post(
            f"/v1/tables/{table_id}/columns", json={"name": name, "type": kind}, params={"wait": 20}
        )
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    return table_id


def _replacing(column: sql.Composable, pairs: list[tuple[str, sql.Composable]]) -> sql.Composable:
    """``replace(replace(column, old1, new1), old2, new2)...``"""
    expr = column
    for old, new in pairs:
        expr = sql.SQL("replace({}, {}, {})").format(expr, sql.Literal(old), new)
    return expr


def fill(conninfo: str, template: str, copies: int) -> tuple[int, int]:
    """Copy the template table ``copies`` times in SQL; answers (tables, events) in the core after."""
    with psycopg.connect(conninfo, autocommit=False) as conn:
        ops = [
            str(r[0])
            for r in conn.execute("SELECT operation_id FROM rm_operations WHERE table_id = %s", (template,))
        ]

        # Each copy's ids: md5 of (copy number, template id) as a uuid, so one statement makes them all.
        def new_id(old: str) -> sql.Composable:
            return sql.SQL("md5(n::text || {})::uuid::text").format(sql.Literal(old))

        pairs = [(template, new_id(template)), *((op, new_id(op)) for op in ops)]
        name = ('"tpl"', sql.SQL("'\"tpl_' || n || '\"'"))
        stream = sql.SQL("'Table$' || {}").format(new_id(template))
        shift = sql.SQL("n * interval '1 millisecond'")
        series = sql.SQL("generate_series(1, {}) AS n").format(sql.Literal(copies))
        conn.execute(
            sql.SQL(
                """INSERT INTO event_store_events
                   (event_id, event_type, schema_version, data, metadata, created_at, valid_at, tx_id)
                   SELECT md5(n::text || e.event_id::text)::uuid, e.event_type, e.schema_version,
                          {data}::jsonb, {metadata}::jsonb, e.created_at + {shift}, e.valid_at, e.tx_id
                   FROM {series}, event_store_events_in_streams s
                   JOIN event_store_events e USING (event_id)
                   WHERE s.stream = {stream}
                   ORDER BY n, s.version"""
            ).format(
                data=_replacing(sql.SQL("e.data::text"), [*pairs, (name[0], name[1])]),
                metadata=_replacing(sql.SQL("e.metadata::text"), pairs),
                shift=shift,
                series=series,
                stream=sql.Literal(f"Table${template}"),
            )
        )
        conn.execute(
            sql.SQL(
                """INSERT INTO event_store_events_in_streams (stream, version, event_id, created_at, tx_id)
                   SELECT {stream}, s.version, md5(n::text || s.event_id::text)::uuid,
                          s.created_at + {shift}, s.tx_id
                   FROM {series}, event_store_events_in_streams s WHERE s.stream = {old}"""
            ).format(stream=stream, shift=shift, series=series, old=sql.Literal(f"Table${template}"))
        )
        conn.execute(
            sql.SQL(
                """INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, deleted, columns,
                                          version,
                                          created_at, updated_at, holds_name, indexes)
                   SELECT {table}::uuid, database_name, 'tpl_' || n, synced, exists_, deleted, columns,
                          version,
                          created_at + {shift}, updated_at + {shift}, holds_name, indexes
                   FROM {series}, rm_tables WHERE table_id = {old}"""
            ).format(table=new_id(template), shift=shift, series=series, old=sql.Literal(template))
        )
        conn.execute(
            sql.SQL(
                """INSERT INTO rm_operations (operation_id, table_id, kind, status, detail, failed_attempts,
                                              steps_done, last_error, accepted_seq, created_at, updated_at,
                                              finished_at, starts)
                   SELECT md5(n::text || o.operation_id::text)::uuid, {table}::uuid, kind, status,
                          {detail}::jsonb, failed_attempts, steps_done, last_error,
                          accepted_seq + n * 10, created_at + {shift}, updated_at + {shift},
                          finished_at + {shift}, starts
                   FROM {series}, rm_operations o WHERE o.table_id = {old}"""
            ).format(
                table=new_id(template),
                detail=_replacing(sql.SQL("o.detail::text"), pairs),
                shift=shift,
                series=series,
                old=sql.Literal(template),
            )
        )
        conn.commit()
        conn.execute("ANALYZE")
        row = conn.execute(
            "SELECT (SELECT count(*) FROM rm_tables), (SELECT count(*) FROM event_store_events)"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def pages(conninfo: str) -> dict[str, str]:
    """The pages to time, on tables and events from the middle of the filled data."""
    with psycopg.connect(conninfo) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_id FROM rm_tables ORDER BY table_id")]
        middle = tables[len(tables) // 2]
        event_row = conn.execute(
            "SELECT e.event_id, e.position, e.created_at FROM event_store_events_in_streams s "
            "JOIN event_store_events e USING (event_id) "
            "WHERE s.stream = %s AND e.event_type = 'TableChanged' "
            "ORDER BY s.version LIMIT 1",
            (f"Table${middle}",),
        ).fetchone()
        assert event_row is not None
        event_id, position, created_at = event_row
        moment = quote(created_at.isoformat())
        # The moment every table had begun (the last one's first event): more of them moved since.
        row = conn.execute(
            "SELECT max(first) FROM (SELECT min(created_at) AS first FROM event_store_events_in_streams"
            " GROUP BY stream) AS streams"
        ).fetchone()
        assert row is not None
        all_begun = row[0]
        # How many tables a moment reads from their streams (moved since) rather than the read model.
        for at in (created_at, all_begun):
            counted = conn.execute(
                "SELECT count(*) FILTER (WHERE first <= %(at)s), count(*) FILTER (WHERE first <= %(at)s"
                " AND last > %(at)s) FROM (SELECT min(created_at) AS first, max(created_at) AS last"
                " FROM event_store_events_in_streams GROUP BY stream) AS streams",
                {"at": at},
            ).fetchone()
            assert counted is not None
            print(f"at {at.isoformat()}: {counted[0]} tables had begun, {counted[1]} moved since (folded)")
    return {
        "tables": "/console",
        "tables, a page in the middle": f"/console?after={middle}",
        "tables, name search": "/console?prefix=tpl_500",
        "tables, status synced": "/console?status=synced",
        "tables at a moment (page of 50)": f"/console?at={moment}",
        "table": f"/console/tables/{middle}",
        "table at version 2 vs 8": f"/console/tables/{middle}?version=2&against=8",
        "operations": "/console/operations",
        "events": "/console/events",
        "events, older page": f"/console/events?before={position}",
        "events of one type": "/console/events?event_type=TableChanged&limit=50",
        "event with its causation chain": f"/console/events/{event_id}",
        "databases": "/console/databases",
        "GET /v1/tables?at= (page of 100)": f"/v1/tables?at={moment}",
        "tables when all had begun (page of 50)": f"/console?at={quote(all_begun.isoformat())}",
        "GET /v1/tables?at= all begun (100)": f"/v1/tables?at={quote(all_begun.isoformat())}",
    }


async def timed(client: httpx.AsyncClient, path: str, rounds: int) -> list[float]:
    for _ in range(2):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        r = await client.get(path)
        samples.append(time.perf_counter() - start)
        assert r.status_code == 200, path
    return samples


async def main(args: argparse.Namespace) -> None:
    with fresh_databases("console") as (core, byodb):
        async with running_service(core, byodb) as service:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
                template = await template_table(client)
                started = time.perf_counter()
                tables, events = fill(service.core_conninfo, template, args.tables - 1)
                print(f"filled {tables} tables, {events} events in {time.perf_counter() - started:.1f} s")
                baseline = await timed(client, "/healthz", args.rounds)
                print(f"{'page':<40} {'p50 ms':>8} {'p95 ms':>8} {'p95/healthz':>12}")
                base50, base95 = ms(pct(baseline, 50)), ms(pct(baseline, 95))
                print(f"{'/healthz (baseline)':<40} {base50:>8} {base95:>8} {1.0:>12.1f}")
                worst: list[tuple[float, str]] = []
                for label, path in pages(service.core_conninfo).items():
                    samples = await timed(client, path, args.rounds)
                    p95 = pct(samples, 95)
                    worst.append((p95, label))
                    ratio = p95 / pct(baseline, 95)
                    print(f"{label:<40} {ms(pct(samples, 50)):>8} {ms(p95):>8} {ratio:>12.1f}")
                slowest = max(worst)
                verdict = "met" if slowest[0] < 0.1 else "NOT met"
                print(f"target p95 < 100 ms: {verdict} (slowest: {slowest[1]}, {ms(slowest[0])} ms)")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=40)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_parse()))
