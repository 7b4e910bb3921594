"""Real processes for the fault suite: the ``schemasaga`` CLI's server and workers as subprocesses on a
fresh core database, HTTP helpers, ``settle`` and the metadata-versus-physical-schema check."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.fault.proxy import free_port

CLI = str(Path(sys.executable).with_name("schemasaga"))

# Settings for the fault suite: short retries and quick detection of dead workers, so a run stays short.
FAST_ENV: dict[str, str] = {
    "SCHEMASAGA_RETRY_MAX_ATTEMPTS": "8",
    "SCHEMASAGA_RETRY_BASE_DELAY": "0.2",
    "SCHEMASAGA_RETRY_MAX_DELAY": "1.0",
    "SCHEMASAGA_JOB_POLLING_INTERVAL": "0.2",
    "SCHEMASAGA_HEARTBEAT_INTERVAL": "0.5",
    "SCHEMASAGA_STALLED_WORKER_TIMEOUT": "3",
    "SCHEMASAGA_DDL_LOCK_TIMEOUT_MS": "2000",
    "SCHEMASAGA_BYODB_CONNECT_TIMEOUT": "2",
    "SCHEMASAGA_WORKER_CONCURRENCY": "4",
    "SCHEMASAGA_LOG_LEVEL": "INFO",
}

TERMINAL = ("completed", "rejected")

# PostgreSQL type names as SQLAlchemy's inspector reports them -> the service's logical types.
PHYSICAL_TO_LOGICAL = {
    "integer": "integer",
    "bigint": "bigint",
    "text": "text",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "double precision": "float",
    "date": "date",
    "uuid": "uuid",
    "jsonb": "json",
    # MySQL/MariaDB spellings of the same logical types (README's type table)
    "mediumtext": "text",
    "datetime": "timestamp",
}


class Process:
    """One CLI subprocess, its output in a log file (no pipes to drain or leak)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                [CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Service:
    """The service under test: a core database, a BYODB URL (maybe through a proxy) and its processes."""

    core_conninfo: str
    byodb_url: str  # what the service uses (may go through the proxy)
    physical_url: str  # direct to the BYODB, for the physical checks
    workdir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    # Every process of one service shares the key that encrypts BYODB credentials at rest.
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    server: Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMASAGA_")}
        env.update(FAST_ENV)
        env.update(
            SCHEMASAGA_DATABASE_URL=self.core_conninfo,
            SCHEMASAGA_BYODB_URL=self.byodb_url,
            SCHEMASAGA_DATA_DIR=str(self.workdir / "data"),
            SCHEMASAGA_SECRET_KEY=self.secret_key,
        )
        env.update(self.env_overrides)
        env.update(extra)
        return env

    def _spawn(self, name: str, args: list[str], **extra: str) -> Process:
        n = sum(1 for p in self.processes if p.name.startswith(name))
        proc = Process(f"{name}{n}", args, self.env(**extra), self.workdir / f"{name}{n}.log")
        self.processes.append(proc)
        return proc

    def start_server(self, *, worker: bool = False, timeout: float = 30, **extra: str) -> Process:
        args = ["serve", "--port", str(self.port)] + ([] if worker else ["--no-worker"])
        self.server = self._spawn("server", args, **extra)
        self.wait_healthy(timeout=timeout)
        return self.server

    def start_worker(self, **extra: str) -> Process:
        return self._spawn("worker", ["worker"], **extra)

    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("worker") and p.alive()]

    def wait_healthy(self, *, timeout: float = 30) -> float:
        """Seconds until /healthz answers 200."""
        start = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=2) as c:
            while True:
                assert self.server is not None and self.server.alive(), self._logs_tail()
                try:
                    if c.get("/healthz").status_code == 200:
                        return time.monotonic() - start
                except httpx.TransportError:
                    pass
                if time.monotonic() - start > timeout:
                    raise AssertionError(f"server not healthy after {timeout}s\n{self._logs_tail()}")
                time.sleep(0.1)

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def stop_all(self) -> None:
        for p in self.processes:
            p.terminate(timeout=10)

    def kill_all(self) -> None:
        for p in self.processes:
            p.kill()

    def _logs_tail(self, lines: int = 40) -> str:
        out = []
        for p in self.processes:
            text = p.log().splitlines()[-lines:]
            out.append(f"--- {p.name} (pid {p.pid}, rc {p.popen.returncode}) ---\n" + "\n".join(text))
        return "\n".join(out)

    def logs(self) -> str:
        return self._logs_tail(lines=10_000)

    # -- core-database checks ------------------------------------------------------------------------

    def core(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.core_conninfo, autocommit=True)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.core() as conn:
            return list(conn.execute(sql, params).fetchall())


# -- HTTP helpers ------------------------------------------------------------------------------------


def create_table(c: httpx.Client, name: str) -> tuple[str, str]:
    r = c.post("/table/create", json={"name": name})
    assert r.status_code == 200, r.text
    body = r.json()
    return body["table"]["table_id"], body["operation_id"]


def add_column(c: httpx.Client, table_id: str, name: str, type_: str = "integer") -> httpx.Response:
    return c.post("/table/column", json={"table_id": table_id, "column": {"name": name, "type": type_}})


def remove_column(c: httpx.Client, table_id: str, name: str) -> httpx.Response:
    return c.post("/table/column", json={"table_id": table_id, "column": {"name": name}})


def open_operations(c: httpx.Client) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for status in ("pending", "running"):
        r = c.get("/v1/operations", params={"status": status, "limit": 1000})
        assert r.status_code == 200, r.text
        ops.extend(r.json())
    return ops


def settle(c: httpx.Client, *, timeout: float = 60, poll: float = 0.2) -> float:
    """Wait until no operation is pending or running; returns the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            left = open_operations(c)
        except httpx.TransportError:
            left = [{"transport": "error"}]
        if not left:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not settled after {timeout}s: {len(left)} open operations: {left[:5]}")
        time.sleep(poll)


def all_tables(c: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"include_deleted": True, "limit": 1000}
        if after:
            params["after"] = after
        r = c.get("/v1/tables", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        items.extend(body["items"])
        after = body["next_after"]
        if after is None:
            return items


# -- the physical schema -------------------------------------------------------------------------------


def physical_schema(url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Every table of the BYODB: column -> logical type, nullability and primary key."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        insp = sa.inspect(engine)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for table in insp.get_table_names():
            pk = set(insp.get_pk_constraint(table)["constrained_columns"])
            cols: dict[str, dict[str, Any]] = {}
            for col in insp.get_columns(table):
                raw = str(col["type"]).lower()
                cols[col["name"]] = {
                    "type": PHYSICAL_TO_LOGICAL.get(raw, raw),
                    "nullable": bool(col["nullable"]),
                    "primary_key": col["name"] in pk,
                }
            out[table] = cols
        return out
    finally:
        engine.dispose()


def metadata_view(columns: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: {"type": c["type"], "nullable": bool(c["nullable"]), "primary_key": bool(c["primary_key"])}
        for name, c in columns.items()
    }


TRASH_PREFIX = "_ssg_trash_"


def check_consistency(c: httpx.Client, physical_url: str) -> dict[str, Any]:
    """Guarantee 1, once settled: each live table's confirmed metadata (/table/show, synced) equals its
    physical schema, no physical table lacks a live metadata table, and every operation is terminal."""
    assert open_operations(c) == [], "check_consistency needs a settled service"
    physical = physical_schema(physical_url)
    tables = all_tables(c)
    live_names: set[str] = set()
    problems: list[str] = []
    for t in tables:
        r = c.post("/table/show", json={"table_id": t["table_id"]})
        assert r.status_code == 200, r.text
        shown = r.json()["table"]
        if not shown["synced"]:
            problems.append(f"{shown['name']} ({shown['table_id']}) is not synced after settle")
            continue
        if not shown["exists"]:
            continue
        live_names.add(shown["name"])
        live = physical.get(shown["name"])
        if live is None:
            problems.append(f"{shown['name']}: metadata says it exists; it does not physically")
            continue
        meta = metadata_view(shown["columns"])
        if meta != live:
            problems.append(f"{shown['name']}: metadata {meta} != physical {live}")
    trash_tables = [name for name in physical if name.startswith(TRASH_PREFIX)]
    for name in physical:
        if name not in live_names and name not in trash_tables:
            problems.append(f"{name}: physical table with no live table in the metadata")
    # Deleted tables and removed columns are kept in the trash: one physical trash table per entry.
    r = c.get("/v1/trash")
    assert r.status_code == 200, r.text
    if len(trash_tables) != len(r.json()):
        problems.append(f"{len(trash_tables)} trash tables for {len(r.json())} trash entries: {trash_tables}")
    assert not problems, "divergences:\n" + "\n".join(problems)
    return {"tables": len(tables), "live": len(live_names), "physical": len(physical)}


def events_without_job_or_outcome(service: Service) -> list[tuple[Any, ...]]:
    """Operations whose events are stored but which are neither finished nor have a saga job queued or
    running: such an operation would never finish (a half-written command)."""
    return service.query(
        """
        SELECT o.operation_id, o.status
        FROM rm_operations o
        WHERE o.status NOT IN ('completed', 'rejected')
          AND NOT EXISTS (
            SELECT 1 FROM procrastinate_jobs j
            WHERE j.status IN ('todo', 'doing')
              AND j.args ->> 'table_id' = o.table_id::text
          )
        """
    )


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(errors="replace").splitlines()


# -- load from concurrent clients -------------------------------------------------------------------


@dataclass
class Accepted:
    operation_id: str
    table_id: str
    kind: str
    accepted_at: float


@dataclass
class LoadResult:
    accepted: list[Accepted] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)  # status code -> count
    transport_errors: int = 0
    refusals: list[str] = field(default_factory=list)  # the error bodies of answers other than 200


def run_clients(
    base_url: str,
    *,
    clients: int,
    total: int,
    command: Callable[[httpx.Client, random.Random, int], tuple[httpx.Response, str, str]],
    stop: threading.Event | None = None,
    seed: int = 0,
    stop_on_transport_error: bool = False,
    result: LoadResult | None = None,
) -> LoadResult:
    """``clients`` threads send ``total`` commands between them; ``command`` sends one and returns the
    answer, the table id and the kind. Records every 200 answer (an accepted command)."""
    result = result if result is not None else LoadResult()
    lock = threading.Lock()
    counter = iter(range(total))
    stop = stop or threading.Event()

    def client_thread(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=base_url, timeout=30) as c:
            while not stop.is_set():
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    r, table_id, kind = command(c, rng, i)
                except httpx.TransportError:
                    with lock:
                        result.transport_errors += 1
                    if stop_on_transport_error:
                        return
                    time.sleep(0.05)
                    continue
                with lock:
                    result.answers[r.status_code] = result.answers.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        result.accepted.append(
                            Accepted(r.json()["operation_id"], table_id, kind, time.monotonic())
                        )
                    else:
                        result.refusals.append(f"{r.status_code} {r.text}")

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


@dataclass
class BackgroundLoad:
    """Client threads sending commands in the background while a test injects faults."""

    result: LoadResult
    stop: threading.Event
    thread: threading.Thread

    def join(self, timeout: float) -> LoadResult:
        """Wait for the commands to be sent; past ``timeout``, stop the clients after their request."""
        self.thread.join(timeout=timeout)
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the client threads did not stop"
        return self.result


def start_load(
    base_url: str,
    *,
    clients: int,
    total: int,
    command: Callable[[httpx.Client, random.Random, int], tuple[httpx.Response, str, str]],
) -> BackgroundLoad:
    result, stop = LoadResult(), threading.Event()
    thread = threading.Thread(
        target=run_clients,
        kwargs={
            "base_url": base_url,
            "clients": clients,
            "total": total,
            "command": command,
            "stop": stop,
            "result": result,
        },
    )
    thread.start()
    return BackgroundLoad(result, stop, thread)


def wait_accepted_since(load: LoadResult, since: float, *, count: int, timeout: float = 30.0) -> None:
    """Wait until the load has had ``count`` commands accepted after ``since`` (a ``time.monotonic()``):
    a fault injected then hits live traffic, not a load that has already ended."""
    deadline = time.monotonic() + timeout
    while sum(1 for a in list(load.accepted) if a.accepted_at > since) < count:
        assert time.monotonic() < deadline, (
            f"the load had fewer than {count} commands accepted in the {timeout:.0f}s after the last fault "
            f"(answers so far {load.answers}): it ended, or stopped being served"
        )
        time.sleep(0.02)


def assert_faults_hit_live_traffic(load: LoadResult, faults: list[tuple[float, float]]) -> None:
    """Each fault, from its start to its end (``time.monotonic()``), fell inside the load: commands were
    accepted after the previous fault and before this one, and again after it."""
    times = sorted(a.accepted_at for a in load.accepted)
    previous_end = float("-inf")
    for i, (start, end) in enumerate(faults, start=1):
        assert any(previous_end < t < start for t in times), f"no command accepted just before fault {i}"
        assert any(t > end for t in times), f"no command accepted after fault {i}: the load had ended"
        previous_end = end


def job_report(service: Service) -> list[tuple[Any, ...]]:
    """Saga jobs by status, with their worker's heartbeat age: what to look at when a run does not settle."""
    return service.query(
        """SELECT j.status, count(*), max(e.type), max(j.id), max(j.worker_id),
                  max(extract(epoch FROM now() - w.last_heartbeat))::int
           FROM procrastinate_jobs j
           LEFT JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'failed'
           LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
           GROUP BY j.status"""
    )
