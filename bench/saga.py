"""The create-table saga through the real HTTP server, against raw ``CREATE TABLE`` on the same PostgreSQL.

Run: ``.venv/bin/python -m bench.saga [--throughput-n 300] [--clients 16] [--latency-n 40] [--seconds 4]``

Each case gets a fresh core database and a fresh BYODB (created on the local PostgreSQL, 127.0.0.1:5432,
user postgres, or on the server of ``SCHEMASAGA_BENCH_DATABASE_URL``) and drops them afterwards. The
service runs as subprocesses: ``schemasaga serve`` (with its in-process worker) or ``schemasaga serve
--no-worker`` plus one ``schemasaga worker``; all are killed at the end, whatever happens.

Cases (issue 3's targets):
  raw         sequential ``CREATE TABLE`` (the service's 4-column shape), one per commit -> tables/s
  throughput  N creates fired by K concurrent HTTP clients, timed until every operation is finished
              (read from the core DB's ``rm_operations`` so polling does not load the API) -> sagas/s,
              ratio to raw (target >= 30%; one raw figure per run moves several-fold on a shared
              machine: ``bench.saga_ratio`` alternates raw and saga slices and gives the verdict)
  latency     one client: create, then poll ``/table/show`` every 2 ms until synced -> p50/p90
              (target median <= 30 ms); and create, then one ``GET /v1/operations/{id}?wait=`` (the
              service's long poll, woken by NOTIFY: no polling load on the service)
  accept      32 clients (in 4 processes) looping create + 3 column adds -> p50/p99 of the HTTP answer
              (target p99 <= 50 ms)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.fernet import Fernet
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.http1 import Http1

ROOT = Path(__file__).resolve().parent.parent
SCHEMASAGA = str(ROOT / ".venv" / "bin" / "schemasaga")
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_SECRET_KEY = Fernet.generate_key().decode("ascii")
RAW_CREATE = (
    "CREATE TABLE {} (id integer PRIMARY KEY NOT NULL, name text, created_at timestamp, updated_at timestamp)"
)


# -- databases ------------------------------------------------------------------------------------


def server_url() -> str:
    return os.environ.get("SCHEMASAGA_BENCH_DATABASE_URL") or LOCAL_SERVER


def db_conninfo(dbname: str) -> str:
    return make_conninfo(server_url(), dbname=dbname)


def sqlalchemy_url(dbname: str) -> str:
    """``postgresql+psycopg://user[:password]@host:port/db`` for the BYODB setting."""
    p = conninfo_to_dict(server_url())
    auth = p.get("user", "postgres") + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql+psycopg://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{dbname}"


@contextlib.contextmanager
def fresh_databases(label: str, *, prefix: str = "bench") -> Iterator[tuple[str, str]]:
    """A new (core, byodb) database pair, dropped on exit (with FORCE: a killed process may linger)."""
    tag = uuid.uuid4().hex[:8]
    names = (f"{prefix}_{label}_core_{tag}", f"{prefix}_{label}_byodb_{tag}")
    with psycopg.connect(server_url(), autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield names
    finally:
        with psycopg.connect(server_url(), autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- the service as subprocesses ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    base_url: str
    core_conninfo: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_service(
    core_db: str,
    byodb_db: str,
    *,
    separate_worker: bool = False,
    concurrency: int | None = None,
    extra_env: dict[str, str] | None = None,
    executable: str = SCHEMASAGA,
) -> AsyncIterator[Service]:
    """``schemasaga serve`` (plus ``schemasaga worker`` when ``separate_worker``) on the two databases;
    ``executable``: another checkout's ``schemasaga`` (a baseline answering beside this one)."""
    port = free_port()
    env = {
        **os.environ,
        "SCHEMASAGA_DATABASE_URL": db_conninfo(core_db),
        "SCHEMASAGA_BYODB_URL": sqlalchemy_url(byodb_db),
        "SCHEMASAGA_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    # With a core URL the service needs a key for BYODB credentials at rest; any fresh Fernet key will do.
    env.setdefault("SCHEMASAGA_SECRET_KEY", BENCH_SECRET_KEY)
    if concurrency is not None:
        env["SCHEMASAGA_WORKER_CONCURRENCY"] = str(concurrency)
    service = Service(f"http://127.0.0.1:{port}", db_conninfo(core_db))
    serve = [executable, "serve", "--port", str(port)] + (["--no-worker"] if separate_worker else [])
    try:
        service.procs.append(subprocess.Popen(serve, env=env, cwd=ROOT, start_new_session=True))
        await wait_healthy(service)
        if separate_worker:
            # The API ran the migrations; the worker's own upgrade then finds nothing to do.
            service.procs.append(
                subprocess.Popen([executable, "worker"], env=env, cwd=ROOT, start_new_session=True)
            )
            await wait_worker(service)
        yield service
    finally:
        stop_all(service.procs)


async def wait_healthy(service: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        while True:
            for p in service.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"schemasaga exited with {p.returncode} before answering")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/healthz", timeout=2)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("schemasaga serve did not answer /healthz in time")
            await asyncio.sleep(0.1)


async def wait_worker(service: Service, timeout: float = 60.0) -> None:
    """Until the separate worker has registered itself in procrastinate's worker table."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(service.core_conninfo, autocommit=True) as conn:
        while True:
            if service.procs[-1].poll() is not None:
                raise RuntimeError("schemasaga worker exited early")
            row = await (await conn.execute("SELECT count(*) FROM procrastinate_workers")).fetchone()
            if row and row[0] >= 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("schemasaga worker did not register in time")
            await asyncio.sleep(0.1)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group we started, then SIGKILL what is left after 5 s."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# -- statistics -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# -- cases ----------------------------------------------------------------------------------------


def raw_create_tables(conninfo: str, seconds: float, max_tables: int = 5000) -> float:
    """Sequential CREATE TABLE, one per commit (autocommit), for ``seconds``; tables/s."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for i in range(20):  # warm-up
            conn.execute(sql.SQL(RAW_CREATE).format(sql.Identifier(f"warm_{i}")))
        n, start = 0, time.perf_counter()
        while n < max_tables and time.perf_counter() - start < seconds:
            conn.execute(sql.SQL(RAW_CREATE).format(sql.Identifier(f"raw_{n}")))
            n += 1
        return n / (time.perf_counter() - start)


def new_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create(client: httpx.AsyncClient, name: str) -> tuple[str, str]:
    r = await client.post("/table/create", json={"name": name})
    r.raise_for_status()
    body = r.json()
    return str(body["table"]["table_id"]), str(body["operation_id"])


async def finished_count(conn: psycopg.AsyncConnection[tuple[int, ...]], kind: str) -> tuple[int, int]:
    row = await (
        await conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'rejected')"
            " FROM rm_operations WHERE kind = %s",
            (kind,),
        )
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass
class Throughput:
    n: int
    clients: int
    seconds: float
    completed: int
    rejected: int

    @property
    def rate(self) -> float:
        return self.completed / self.seconds


async def throughput(service: Service, n: int, clients: int, timeout: float = 60.0) -> Throughput:
    """Fire ``n`` creates from ``clients`` concurrent clients; time from the first request until the
    last operation's outcome was committed (``rm_operations.finished_at``, same host clock)."""
    names = [new_name("tp") for _ in range(n)]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with (
        httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=30) as client,
        await psycopg.AsyncConnection.connect(service.core_conninfo, autocommit=True) as conn,
    ):
        queue: asyncio.Queue[str] = asyncio.Queue()
        for name in names:
            queue.put_nowait(name)

        async def fire() -> None:
            while not queue.empty():
                await create(client, queue.get_nowait())

        start_wall, start = time.time(), time.perf_counter()
        await asyncio.gather(*(fire() for _ in range(clients)))
        done = rejected = 0
        while time.perf_counter() - start < timeout:
            done, rejected = await finished_count(conn, "create_table")
            if done + rejected >= n:
                break
            await asyncio.sleep(0.01)
        row = await (
            await conn.execute(
                "SELECT extract(epoch FROM max(finished_at)) FROM rm_operations WHERE kind = 'create_table'"
            )
        ).fetchone()
        end_wall = float(row[0]) if row and row[0] is not None else time.time()
        if done + rejected < n:  # timed out: rate over the whole timeout
            end_wall = start_wall + timeout
        return Throughput(n, clients, end_wall - start_wall, done, rejected)


async def one_client_latency(
    service: Service, count: int, max_seconds: float, *, wait: bool = False, minimal: bool = False
) -> list[float]:
    """Create, then poll /table/show every 2 ms until synced; seconds from request to synced.
    ``wait``: instead of polling, one ``GET /v1/operations/{id}?wait=`` (answered when the outcome is
    committed, woken by the service's NOTIFY), so that the client's polls do not load the service.
    ``minimal`` (with ``wait``): the same two requests sent with bench.http1's client instead of httpx,
    whose own cost (about 1.3 ms a request here) is then left out of the figure."""
    if minimal:
        return await _one_client_minimal(service, count, max_seconds)
    out: list[float] = []
    async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
        if wait:
            for _ in range(3):  # warm-up
                _table_id, op = await create(client, new_name("warm"))
                await client.get(f"/v1/operations/{op}", params={"wait": 10})
            stop_at = time.perf_counter() + max_seconds
            while len(out) < count and time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                _table_id, op = await create(client, new_name("lat"))
                r = await client.get(f"/v1/operations/{op}", params={"wait": 10})
                if r.json()["status"] != "completed":
                    raise RuntimeError(f"operation {op} not completed: {r.text}")
                out.append(time.perf_counter() - t0)
                await asyncio.sleep(0.01)
            return out
        for _ in range(3):  # warm-up: connections, adapter pool, prepared statements
            table_id, _op = await create(client, new_name("warm"))
            while not (await client.post("/table/show", json={"table_id": table_id})).json()["table"][
                "synced"
            ]:
                await asyncio.sleep(0.002)
        stop_at = time.perf_counter() + max_seconds
        while len(out) < count and time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            table_id, _op = await create(client, new_name("lat"))
            while True:
                r = await client.post("/table/show", json={"table_id": table_id})
                if r.json()["table"]["synced"]:
                    break
                await asyncio.sleep(0.002)
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
    return out


async def create_and_wait(http: Http1, prefix: str) -> None:
    """``POST /table/create``, then ``GET /v1/operations/{id}?wait=`` until it completed (bench.http1)."""
    status, body = await http.post("/table/create", {"name": new_name(prefix)})
    if status != 200:
        raise RuntimeError(f"create answered {status}: {body}")
    status, body = await http.get(f"/v1/operations/{body['operation_id']}", {"wait": 10})
    if status != 200 or body["status"] != "completed":
        raise RuntimeError(f"operation not completed ({status}): {body}")


async def _one_client_minimal(service: Service, count: int, max_seconds: float) -> list[float]:
    out: list[float] = []
    async with Http1(service.base_url) as http:
        for _ in range(3):  # warm-up
            await create_and_wait(http, "warm")
        stop_at = time.perf_counter() + max_seconds
        while len(out) < count and time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await create_and_wait(http, "lat")
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
    return out


@dataclass
class Acceptance:
    create: list[float]
    column: list[float]
    errors: int
    seconds: float

    @property
    def all(self) -> list[float]:
        return self.create + self.column


async def acceptance(
    service: Service, clients: int, seconds: float, columns_per_table: int = 3, *, minimal: bool = False
) -> Acceptance:
    """``clients`` loops of: create a table, then queue ``columns_per_table`` column adds on it.
    ``minimal``: each loop on a connection of its own with bench.http1's client instead of httpx."""
    if minimal:
        return await _acceptance_minimal(service, clients, seconds, columns_per_table)
    result = Acceptance([], [], 0, seconds)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=30) as client:
        stop_at = 0.0

        async def timed(path: str, body: dict[str, object], into: list[float]) -> httpx.Response | None:
            t0 = time.perf_counter()
            r = await client.post(path, json=body)
            if r.status_code != 200:
                result.errors += 1
                return None
            into.append(time.perf_counter() - t0)
            return r

        async def loop() -> None:
            while time.perf_counter() < stop_at:
                r = await timed("/table/create", {"name": new_name("acc")}, result.create)
                if r is None:
                    continue
                table_id = r.json()["table"]["table_id"]
                for c in range(columns_per_table):
                    if time.perf_counter() >= stop_at:
                        break
                    body = {"table_id": table_id, "column": {"name": f"c{c}", "type": "integer"}}
                    await timed("/table/column", body, result.column)

        await client.get("/healthz")
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(loop() for _ in range(clients)))
    return result


async def _acceptance_minimal(
    service: Service, clients: int, seconds: float, columns_per_table: int
) -> Acceptance:
    result = Acceptance([], [], 0, seconds)
    stop_at = 0.0

    async def loop() -> None:
        async with Http1(service.base_url) as http:

            async def timed(path: str, body: dict[str, object], into: list[float]) -> Any:
                t0 = time.perf_counter()
                status, answer = await http.post(path, body)
                if status != 200:
                    result.errors += 1
                    return None
                into.append(time.perf_counter() - t0)
                return answer

            await started.wait()
            while time.perf_counter() < stop_at:
                answer = await timed("/table/create", {"name": new_name("acc")}, result.create)
                if answer is None:
                    continue
                table_id = answer["table"]["table_id"]
                for c in range(columns_per_table):
                    if time.perf_counter() >= stop_at:
                        break
                    body = {"table_id": table_id, "column": {"name": f"c{c}", "type": "integer"}}
                    await timed("/table/column", body, result.column)

    started = asyncio.Event()
    loops = [asyncio.create_task(loop()) for _ in range(clients)]
    await asyncio.sleep(0.2)  # every connection open first
    stop_at = time.perf_counter() + seconds
    started.set()
    await asyncio.gather(*loops)
    return result


def acceptance_in_processes(
    service: Service, clients: int, seconds: float, procs: int, *, minimal: bool = False
) -> Acceptance:
    """The acceptance case split over ``procs`` client processes (one httpx process tops out near
    ~110 req/s on this machine and would measure itself rather than the API). ``minimal``: the
    clients use bench.http1's client instead of httpx."""
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    child = "--accept-child-minimal" if minimal else "--accept-child"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.saga", child, service.base_url, str(n), str(seconds)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for n in per
        if n > 0
    ]
    total = Acceptance([], [], 0, seconds)
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        part = json.loads(out)
        total.create += part["create"]
        total.column += part["column"]
        total.errors += part["errors"]
    return total


def accept_child(base_url: str, clients: int, seconds: float, *, minimal: bool = False) -> None:
    acc = asyncio.run(acceptance(Service(base_url, ""), clients, seconds, minimal=minimal))
    print(json.dumps({"create": acc.create, "column": acc.column, "errors": acc.errors}))


# -- main -----------------------------------------------------------------------------------------


def line(label: str, values: list[float]) -> str:
    return (
        f"{label}: n={len(values)} p50={ms(pct(values, 50))} ms p90={ms(pct(values, 90))} ms "
        f"p99={ms(pct(values, 99))} ms max={ms(max(values) if values else float('nan'))} ms"
    )


THROUGHPUTS: list[float] = []


async def service_cases(args: argparse.Namespace, raw_rate: float, *, separate_worker: bool) -> None:
    mode = "serve --no-worker + worker" if separate_worker else "serve (in-process worker)"
    if not args.skip_throughput:
        for conc in args.concurrency:
            with fresh_databases("tp") as (core, byodb):
                async with running_service(
                    core, byodb, separate_worker=separate_worker, concurrency=conc
                ) as s:
                    tp = await throughput(s, args.throughput_n, args.clients)
            THROUGHPUTS.append(tp.rate)
            print(
                f"[{mode}, worker concurrency {conc}] throughput: {tp.completed} completed "
                f"+ {tp.rejected} rejected of {tp.n} in {tp.seconds:.2f} s ({tp.clients} clients) "
                f"= {tp.rate:.1f} sagas/s = {100 * tp.rate / raw_rate:.1f}% of raw",
                flush=True,
            )
    with fresh_databases("lat") as (core, byodb):
        async with running_service(core, byodb, separate_worker=separate_worker) as s:
            lat = await one_client_latency(s, args.latency_n, args.seconds * 2)
            print(f"[{mode}] request-to-synced, 1 client, " + line("latency", lat), flush=True)
            lat = await one_client_latency(s, args.latency_n, args.seconds * 2, wait=True)
            print(f"[{mode}] request-to-outcome (?wait=), 1 client, " + line("latency", lat), flush=True)
            lat = await one_client_latency(s, args.latency_n, args.seconds * 2, wait=True, minimal=True)
            print(
                f"[{mode}] request-to-outcome (?wait=), 1 client with bench.http1 (not httpx), "
                + line("latency", lat),
                flush=True,
            )
            for minimal in (False, True):
                acc = await asyncio.to_thread(
                    partial(acceptance_in_processes, minimal=minimal),
                    s,
                    args.accept_clients,
                    args.seconds,
                    args.accept_procs,
                )
                print(
                    f"[{mode}] acceptance, {args.accept_clients} clients in {args.accept_procs} processes"
                    f"{' with bench.http1 (not httpx)' if minimal else ''}, {args.seconds:.0f} s, "
                    f"{len(acc.all) / acc.seconds:.0f} req/s, {acc.errors} errors",
                    flush=True,
                )
                print("    " + line("all    ", acc.all), flush=True)
                print("    " + line("create ", acc.create), flush=True)
                print("    " + line("column ", acc.column), flush=True)


def raw_case(seconds: float, when: str) -> float:
    with fresh_databases("raw") as (_core, byodb):
        rate = raw_create_tables(db_conninfo(byodb), seconds)
    print(
        f"raw CREATE TABLE (4 columns, one per commit, sequential, {when}): {rate:.0f} tables/s", flush=True
    )
    return rate


async def amain(args: argparse.Namespace) -> None:
    # The raw rate is measured before and after the service cases (the machine is shared and noisy);
    # ratios use the first one, the last line gives them against the second too.
    raw_rate = raw_case(args.raw_seconds, "before")
    await service_cases(args, raw_rate, separate_worker=False)
    if not args.skip_separate:
        await service_cases(args, raw_rate, separate_worker=True)
    raw_after = raw_case(args.raw_seconds, "after")
    for rate in THROUGHPUTS:
        print(f"throughput {rate:.1f} sagas/s = {100 * rate / raw_after:.1f}% of the raw rate measured after")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-seconds", type=float, default=3.0)
    parser.add_argument("--throughput-n", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16, help="HTTP clients of the throughput case")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[8, 16],
        help="SCHEMASAGA_WORKER_CONCURRENCY values of the throughput case",
    )
    parser.add_argument("--latency-n", type=int, default=40)
    parser.add_argument("--accept-clients", type=int, default=32)
    parser.add_argument("--accept-procs", type=int, default=4, help="client processes of the acceptance case")
    parser.add_argument("--accept-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--accept-child-minimal", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of the acceptance case")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-separate", action="store_true", help="skip the --no-worker + worker runs")
    args = parser.parse_args()
    if args.accept_child:
        url, clients, seconds = args.accept_child
        accept_child(url, int(clients), float(seconds))
        return
    if args.accept_child_minimal:
        url, clients, seconds = args.accept_child_minimal
        accept_child(url, int(clients), float(seconds), minimal=True)
        return
    t0 = time.perf_counter()
    try:
        asyncio.run(amain(args))
    except KeyboardInterrupt:
        sys.exit(130)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
