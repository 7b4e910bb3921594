"""Editing a big table through schemasaga while another connection writes, against the raw DDL.

Run: ``.venv/bin/python -m bench.editing [--rows N] [--rate 500]`` (rows: ``SCHEMASAGA_BENCH_EDITING_ROWS``,
default 1,000,000; ``--rows 20000`` is a quick check of a minute or less).

On a fresh core database and a fresh BYODB (local PostgreSQL, 127.0.0.1:5432, or the server of
``SCHEMASAGA_BENCH_DATABASE_URL``; both dropped at the end), with the real ``schemasaga serve``
(in-process worker) as a subprocess, like ``bench.saga``:

1. ``POST /v1/tables`` creates table ``big`` (the four default columns plus ``val integer``) through the
   service's saga; its rows are then written into the BYODB with one ``INSERT ... SELECT generate_series``,
   and an identical copy ``big_raw`` is made (``LIKE ... INCLUDING ALL``, same rows), both vacuumed and
   analyzed.
2. Type change ``val`` integer -> bigint (a rewrite under ACCESS EXCLUSIVE): raw ``ALTER TABLE`` through
   psycopg on ``big_raw``, then ``PATCH /v1/tables/{id}/columns/val`` on ``big``, timed from the request
   until the operation is completed (polled every 10 ms).
3. Index on ``val``: ``POST /v1/tables/{id}/indexes`` on ``big`` (the plan builds it ``CONCURRENTLY``), then
   raw ``CREATE INDEX`` and raw ``CREATE INDEX CONCURRENTLY`` (after dropping the first) on ``big_raw``.
4. Lock queue (``--blocker S``, default 8; 0 skips it): another session holds the table in ACCESS SHARE
   (an open transaction that read it) for S seconds while a default is set on ``val`` (ACCESS EXCLUSIVE,
   no rewrite): through the saga (its lock timeout, then its retries) and raw (no lock timeout).

During each change a writer thread, on its own autocommit connection, inserts one row at a time into the
table being changed at ``--rate`` rows/s (open loop: each insert has its scheduled time; a late one is sent
at once). Reported per case: the change's wall duration, the ratio saga / raw, and the writer's longest
insert (its stall) against the DDL lock timeout the saga uses (``SCHEMASAGA_DDL_LOCK_TIMEOUT_MS``, default
5000 ms: it bounds how long the saga's DDL *waits* for its lock, not how long it then holds it).
Before each saga case its plan is fetched with ``?dry_run=true`` and printed; after it, the saga's events
(with their times) and the live table (bigint; a valid index) are printed. A rejected saga is reported as
such, not raised (e.g. with ``SCHEMASAGA_DDL_STATEMENT_TIMEOUT_MS`` below the rewrite's duration).
``--lock-timeout-ms`` sets the service's ``SCHEMASAGA_DDL_LOCK_TIMEOUT_MS``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.saga import db_conninfo, fresh_databases, ms, pct, running_service
from schemasaga.config import Settings

TABLE = "big"
COPY = "big_raw"
ROWS_ENV = "SCHEMASAGA_BENCH_EDITING_ROWS"

FILL = """
INSERT INTO {} (id, name, created_at, updated_at, val)
SELECT g, 'row ' || g, now() - g * interval '1 second', now(), (g::bigint * 7919) %% 1000003
FROM generate_series(1, %(rows)s) AS g
"""
INSERT = "INSERT INTO {} (id, name, created_at, updated_at, val) VALUES (%s, %s, now(), now(), %s)"


# -- the writer -----------------------------------------------------------------------------------


@dataclass
class Sample:
    scheduled: float  # perf_counter when it was due
    sent: float
    done: float

    @property
    def latency(self) -> float:
        return self.done - self.sent

    @property
    def lateness(self) -> float:
        """From when it was due until it was done: includes waiting behind an insert that stalled."""
        return self.done - self.scheduled


@dataclass
class Writer:
    """Inserts one row per autocommit statement into ``table`` at ``rate`` rows/s, in a thread."""

    conninfo: str
    table: str
    first_id: int
    rate: float
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    next_id: int = 0  # the id after the last one written

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"writer-{self.table}", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the writer did not connect")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        statement = sql.SQL(INSERT).format(sql.Identifier(self.table))
        period = 1.0 / self.rate
        row_id = self.next_id = self.first_id
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                self._ready.set()
                due = time.perf_counter()
                while not self._stop.is_set():
                    now = time.perf_counter()
                    if now < due:
                        time.sleep(due - now)
                    sent = time.perf_counter()
                    conn.execute(statement, (row_id, f"written {row_id}", row_id % 1000003), prepare=True)
                    self.samples.append(Sample(due, sent, time.perf_counter()))
                    row_id = self.next_id = row_id + 1
                    due += period
        except Exception as exc:  # reported with the case, not swallowed
            self.errors.append(repr(exc))
        finally:
            self._ready.set()


# -- one case -------------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    seconds: float
    samples: list[Sample]
    window: tuple[float, float]
    errors: list[str]
    next_id: int

    def during(self) -> list[Sample]:
        start, end = self.window
        return [s for s in self.samples if s.done >= start and s.sent <= end]

    @property
    def stall(self) -> float:
        return max((s.latency for s in self.samples), default=float("nan"))

    def line(self, lock_timeout_s: float) -> str:
        lat = [s.latency for s in self.samples]
        late = max((s.lateness for s in self.samples), default=float("nan"))
        over = sum(1 for s in self.samples if s.latency >= 0.9 * lock_timeout_s)
        during = self.during()
        return (
            f"{self.label}: {self.seconds:.2f} s; writer: {len(self.samples)} inserts "
            f"({len(during)} during the change), latency p50={ms(pct(lat, 50))} ms p99={ms(pct(lat, 99))} ms "
            f"max={ms(self.stall)} ms (max lateness {ms(late)} ms), {over} of them >= 0.9 x the lock timeout"
            + (f"; WRITER ERRORS: {self.errors}" if self.errors else "")
        )


async def with_writer(
    label: str,
    conninfo: str,
    table: str,
    first_id: int,
    rate: float,
    change: Callable[[], Awaitable[None]],
    settle: float,
) -> Case:
    """Run ``change`` while a writer inserts into ``table``; ``settle`` seconds of writes before and after."""
    writer = Writer(conninfo, table, first_id, rate)
    writer.start()
    try:
        await asyncio.sleep(settle)
        start = time.perf_counter()
        await change()
        end = time.perf_counter()
        await asyncio.sleep(settle)
    finally:
        await asyncio.to_thread(writer.stop)
    return Case(label, end - start, writer.samples, (start, end), writer.errors, writer.next_id)


# -- the service side -----------------------------------------------------------------------------


async def wait_operation(
    client: httpx.AsyncClient, operation_id: str, timeout: float, *, rejected_ok: bool = False
) -> dict[str, Any]:
    """The operation once finished; a rejection raises unless ``rejected_ok`` (a change measured as it
    is: a saga case reports its outcome)."""
    deadline = time.perf_counter() + timeout
    while True:
        r = await client.get(f"/v1/operations/{operation_id}")
        r.raise_for_status()
        op: dict[str, Any] = r.json()
        if op["status"] in ("completed", "rejected"):
            if op["status"] != "completed" and not rejected_ok:
                raise RuntimeError(f"operation {operation_id} was rejected: {op['last_error']}")
            return op
        if time.perf_counter() > deadline:
            raise RuntimeError(f"operation {operation_id} not finished after {timeout:.0f} s: {op}")
        await asyncio.sleep(0.01)


async def saga_change(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any],
    timeout: float,
    operations: list[str],
) -> Callable[[], Awaitable[None]]:
    """Print the change's plan (dry run), and return the change itself: request, then wait for it (its
    operation id is appended to ``operations``)."""
    r = await client.request(method, path, json=body, params={"dry_run": "true"})
    r.raise_for_status()
    plan = r.json()
    for s in plan["statements"]:
        print(
            f"    plan: {s['sql']}  [lock {s['lock']}; rewrites={s['rewrites']} scans={s['scans']} "
            f"transactional={s['transactional']}]",
            flush=True,
        )
    for w in plan["warnings"]:
        print(f"    plan warning: {w}", flush=True)

    async def run() -> None:
        r = await client.request(method, path, json=body)
        r.raise_for_status()
        operations.append(str(r.json()["operation_id"]))
        await wait_operation(client, operations[-1], timeout, rejected_ok=True)

    return run


def raw_change(conninfo: str, statement: sql.Composed) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        def execute() -> None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(statement)

        await asyncio.to_thread(execute)

    return run


def behind_blocker(
    conninfo: str, table: str, hold: float, change: Callable[[], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """``change`` started while another session holds ``table`` in ACCESS SHARE (an open transaction that
    read it, as a long report would) for ``hold`` seconds: the change's lock waits in the queue, and
    every insert after it waits behind it."""

    async def run() -> None:
        held = threading.Event()

        def block() -> None:
            with psycopg.connect(conninfo) as conn:
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))
                held.set()
                time.sleep(hold)
                conn.rollback()

        blocker = asyncio.ensure_future(asyncio.to_thread(block))
        while not held.is_set():
            if blocker.done():
                await blocker  # raises what the blocker hit
            await asyncio.sleep(0.01)
        await change()
        await blocker

    return run


def prepare(conninfo: str, rows: int) -> None:
    """Fill ``big`` (created by the service) and copy it to ``big_raw``, both vacuumed and analyzed."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute(sql.SQL(FILL).format(sql.Identifier(TABLE)), {"rows": rows})
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(COPY), sql.Identifier(TABLE)
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT * FROM {}").format(sql.Identifier(COPY), sql.Identifier(TABLE))
        )
        for name in (TABLE, COPY):
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(name)))
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", (TABLE,)).fetchone()
        print(
            f"filled {TABLE} and {COPY}: {rows:,} rows each ({size[0] if size else '?'} each) "
            f"in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )


# The operation's events, in order, with their times (clock_timestamp() at the insert).
OPERATION_EVENTS = """
SELECT e.event_type, e.data ->> 'step', e.created_at
FROM event_store_events e
WHERE e.metadata ->> 'correlation_id' = %s
ORDER BY e.position
"""


def phases(core_conninfo: str, operation_id: str) -> str:
    """``TableChanged +0 ms, SagaStepCompleted(alter) +1234 ms, ...``: where a saga's time went."""
    with psycopg.connect(core_conninfo) as conn:
        rows = conn.execute(OPERATION_EVENTS, (operation_id,)).fetchall()
    if not rows:
        return "(no events)"
    first = rows[0][2]
    return ", ".join(
        f"{kind}{f'({step})' if step else ''} +{(at - first).total_seconds() * 1000:.0f} ms"
        for kind, step, at in rows
    )


def checkpoint(conninfo: str) -> None:
    """Write dirty pages out before a case, so that no case pays for the previous one's checkpoint."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def live_facts(conninfo: str, table: str) -> tuple[str, list[tuple[str, bool]]]:
    with psycopg.connect(conninfo) as conn:
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND column_name = 'val'",
            (table,),
        ).fetchone()
        indexes = conn.execute(
            "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
            " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary ORDER BY 1",
            (table,),
        ).fetchall()
    return (str(kind[0]) if kind else "?"), [(str(n), bool(v)) for n, v in indexes]


# -- main -----------------------------------------------------------------------------------------


def summary(cases: dict[str, Case], lock_timeout_s: float) -> None:
    def ratio(a: str, b: str) -> str:
        return f"{cases[a].seconds / cases[b].seconds:.2f}"

    print(f"\nlock timeout of the saga's DDL: {lock_timeout_s * 1000:.0f} ms")
    print("| case | duration (s) | writer's longest insert (ms) | longest insert / lock timeout |")
    print("|---|---:|---:|---|")
    for case in cases.values():
        print(f"| {case.label} | {case.seconds:.2f} | {ms(case.stall)} | {case.stall / lock_timeout_s:.2f} |")
    print(f"type change, saga / raw ALTER: {ratio('alter_saga', 'alter_raw')}")
    print(
        f"index, saga (CONCURRENTLY) / raw CREATE INDEX: {ratio('index_saga', 'index_raw')}; "
        f"/ raw CREATE INDEX CONCURRENTLY: {ratio('index_saga', 'index_raw_concurrently')}"
    )
    if "queue_saga" in cases:
        print(f"lock queue, saga / raw: {ratio('queue_saga', 'queue_raw')}")


async def amain(args: argparse.Namespace) -> dict[str, Case]:
    if args.lock_timeout_ms is not None:
        # the service (a subprocess) inherits it, and Settings below reads it
        os.environ["SCHEMASAGA_DDL_LOCK_TIMEOUT_MS"] = str(args.lock_timeout_ms)
    settings = Settings()
    lock_timeout_s = settings.ddl_lock_timeout_ms / 1000
    timeout = settings.ddl_statement_timeout_ms / 1000 * 3 + 60
    cases: dict[str, Case] = {}
    rate, settle = args.rate, args.settle
    with fresh_databases("edit") as (core, byodb):
        conninfo = db_conninfo(byodb)
        async with (
            running_service(core, byodb) as service,
            httpx.AsyncClient(base_url=service.base_url, timeout=timeout) as client,
        ):
            body = {"name": TABLE, "columns": [{"name": "val", "type": "integer"}]}
            r = await client.post("/v1/tables", json=body)
            r.raise_for_status()
            table_id = str(r.json()["table_id"])
            await wait_operation(client, str(r.json()["operation_id"]), timeout)
            await asyncio.to_thread(prepare, conninfo, args.rows)
            # each case's writer starts its ids above every row written before it, in either table
            next_id = args.rows + 1

            async def case(name: str, label: str, table: str, change: Callable[[], Awaitable[None]]) -> None:
                nonlocal next_id
                await asyncio.to_thread(checkpoint, conninfo)
                cases[name] = await with_writer(label, conninfo, table, next_id, rate, change, settle)
                next_id = cases[name].next_id
                print("  " + cases[name].line(lock_timeout_s), flush=True)

            operations: list[str] = []

            async def saga_case(name: str, label: str, change: Callable[[], Awaitable[None]]) -> None:
                await case(name, label, TABLE, change)
                op = (await client.get(f"/v1/operations/{operations[-1]}")).json()
                print(f"    saga events: {phases(service.core_conninfo, operations[-1])}", flush=True)
                if op["status"] != "completed":
                    cases[name].label += " (REJECTED)"
                if op["attempts"] > 1 or op["status"] != "completed":
                    print(
                        f"    saga {op['status']} after {op['attempts']} attempt(s); last error: "
                        f"{(op['last_error'] or '')[:300]}",
                        flush=True,
                    )

            # Which of raw and saga runs first alternates between the two changes (--swap: the other way).
            print("type change: val integer -> bigint", flush=True)
            alter = sql.SQL("ALTER TABLE {} ALTER COLUMN val TYPE bigint USING val::bigint").format(
                sql.Identifier(COPY)
            )
            patch = await saga_change(
                client, "PATCH", f"/v1/tables/{table_id}/columns/val", {"type": "bigint"}, timeout, operations
            )
            print(f"    raw: {alter.as_string(None)}", flush=True)
            pair: list[Callable[[], Awaitable[None]]] = [
                lambda: case("alter_raw", "raw ALTER TABLE", COPY, raw_change(conninfo, alter)),
                lambda: saga_case("alter_saga", "schemasaga PATCH column type", patch),
            ]
            for run in reversed(pair) if args.swap else pair:
                await run()
            print(
                f"    live after: {TABLE} {live_facts(conninfo, TABLE)}; {COPY} {live_facts(conninfo, COPY)}"
            )

            print("index on val", flush=True)
            index = await saga_change(
                client, "POST", f"/v1/tables/{table_id}/indexes", {"columns": ["val"]}, timeout, operations
            )
            plain = sql.SQL("CREATE INDEX {} ON {} (val)").format(
                sql.Identifier("raw_val_idx"), sql.Identifier(COPY)
            )
            concurrent = sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} (val)").format(
                sql.Identifier("raw_val_idx"), sql.Identifier(COPY)
            )
            print(
                f"    raw: {plain.as_string(None)}; then dropped, and {concurrent.as_string(None)}",
                flush=True,
            )

            async def raw_indexes() -> None:
                await case("index_raw", "raw CREATE INDEX", COPY, raw_change(conninfo, plain))
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier("raw_val_idx")))
                await case(
                    "index_raw_concurrently",
                    "raw CREATE INDEX CONCURRENTLY",
                    COPY,
                    raw_change(conninfo, concurrent),
                )

            pair = [lambda: saga_case("index_saga", "schemasaga POST index", index), raw_indexes]
            for run in reversed(pair) if args.swap else pair:
                await run()
            print(
                f"    live after: {TABLE} {live_facts(conninfo, TABLE)}; {COPY} {live_facts(conninfo, COPY)}"
            )

            if args.blocker > 0:
                print(
                    f"lock queue: a session holds each table in ACCESS SHARE for {args.blocker:.0f} s, then "
                    "a default is set on val (ACCESS EXCLUSIVE, no rewrite)",
                    flush=True,
                )
                default = await saga_change(
                    client, "PATCH", f"/v1/tables/{table_id}/columns/val", {"default": 0}, timeout, operations
                )
                set_default = sql.SQL("ALTER TABLE {} ALTER COLUMN val SET DEFAULT 0").format(
                    sql.Identifier(COPY)
                )
                print(
                    f"    raw (no lock_timeout, as psql's default): {set_default.as_string(None)}", flush=True
                )
                await saga_case(
                    "queue_saga",
                    "schemasaga PATCH column default behind a reader",
                    behind_blocker(conninfo, TABLE, args.blocker, default),
                )
                await case(
                    "queue_raw",
                    "raw ALTER ... SET DEFAULT behind a reader",
                    COPY,
                    behind_blocker(conninfo, COPY, args.blocker, raw_change(conninfo, set_default)),
                )
    summary(cases, lock_timeout_s)
    return cases


def main(argv: list[str] | None = None) -> dict[str, Case]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=int(os.environ.get(ROWS_ENV, "1000000")))
    parser.add_argument("--rate", type=float, default=500.0, help="the writer's inserts per second")
    parser.add_argument(
        "--swap", action="store_true", help="saga before raw for the type change, after for the index"
    )
    parser.add_argument(
        "--blocker",
        type=float,
        default=8.0,
        help="seconds a reader holds the table in the lock-queue case (0: skip the case)",
    )
    parser.add_argument(
        "--lock-timeout-ms",
        type=int,
        help="the service's DDL lock timeout (SCHEMASAGA_DDL_LOCK_TIMEOUT_MS; default: the service's, 5000)",
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds of writes before and after a change"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    cases = asyncio.run(amain(args))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return cases


if __name__ == "__main__":
    main()
