"""Several processes on one core database: ``serve --workers 2 --no-worker`` (two API processes) and three
``schemasaga worker`` processes, 32 clients creating and altering tables, and every ``KILL_EVERY``
seconds one worker SIGKILLed and another started in its place. The second layout runs two plain ``serve``
processes instead, each with its in-process worker, to which it hands the jobs it defers
(jobs/handoff.py), beside the same three workers: the clients send each request to either process, so
the hand-off's claims race the other processes' fetches for the jobs of one table.

What must hold, each checked from what the processes left behind rather than from what they say:
- every operation a client was answered for was accepted once and reached its outcome once: one
  accepting and one outcome event per operation id in the event store, and every operation completed;
- no saga ran in two workers at once: each worker's log gives, per job, when procrastinate started it
  and when it ended (a worker killed meanwhile ran it until its kill); the runs of one table's jobs in
  different processes never overlap in time;
- no divergence: ``schemasaga verify`` exits 0, and each table's metadata is its live schema.

``SCHEMASAGA_SCALE_OUT_OPERATIONS`` (default 152) sets the size; ``make scale-out-long`` runs a bigger one.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import psycopg
import pytest

from tests.acceptance.conftest import (
    CLI,
    Proc,
    Spawn,
    metadata_columns,
    physical_columns,
    show,
    start_server,
    wait_until,
)
from tests.acceptance.test_visibility import metric

pytestmark = pytest.mark.acceptance

OPERATIONS = int(os.environ.get("SCHEMASAGA_SCALE_OUT_OPERATIONS", "152"))
CLIENTS = 32
WORKERS = 3
KILL_EVERY = 2.5
# Each table gets 4 operations (create, add a, add b, remove a), one every PACE seconds from its client,
# so that the work is spread over the kills rather than done before the first one.
PER_TABLE = 4
PACE = 2.5
DRAIN_TIMEOUT = 60.0 + OPERATIONS / 5

ACCEPTING = ("TableCreated", "TableChanged")
OUTCOMES = (
    "TableCreationConfirmed",
    "TableCreationRejected",
    "TableChangeConfirmed",
    "TableChangeRejected",
)


@dataclass
class Workers:
    spawn: Spawn
    env: dict[str, str]
    alive: list[Proc] = field(default_factory=list)
    all: list[Proc] = field(default_factory=list)
    killed_at: dict[int, float] = field(default_factory=dict)  # pid -> time.time() of its SIGKILL

    def start(self) -> Proc:
        proc = self.spawn(f"worker-{len(self.all) + 1}", ["worker"], self.env)
        self.alive.append(proc)
        self.all.append(proc)
        return proc

    def ready(self) -> list[Proc]:
        return [w for w in self.alive if "Starting worker" in w.stderr()]

    def kill_one(self, rng: random.Random, *, prefer_busy: bool) -> None:
        """SIGKILL a worker that runs jobs and start another; never the last one running jobs (one that
        is still starting runs none), so that every kill lands on a working queue. A worker with a job
        in hand (by its log) is chosen when one shows up within a second (``prefer_busy``, while the
        clients send: once they are done, that would keep killing the last sagas)."""
        ready = self.ready()
        if len(ready) < 2:
            return
        deadline = time.monotonic() + (1.0 if prefer_busy else 0.0)
        while not (busy := [w for w in ready if _jobs_in_hand(w)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = rng.choice(busy or ready)
        self.alive.remove(victim)
        victim.signal(signal.SIGKILL)
        self.killed_at[victim.pid] = time.time()
        victim.wait(10)
        self.start()


@dataclass
class Run:
    """One job's run in one worker process, from its log: [start, end]; end is the kill's time when
    the process was killed with the job in hand."""

    pid: int
    job_id: int
    table_id: str
    start: float
    end: float | None


def _jobs_in_hand(worker: Proc) -> int:
    text = worker.stderr()
    return text.count('"message": "Starting job ') - text.count(") ended with status: ")


def _log_time(line: dict[str, str]) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


def job_runs(worker: Proc, killed_at: float | None) -> list[Run]:
    """Each run of a job in this worker: procrastinate logs ``Starting job <task>[<id>](table_id=...,
    ...)`` before it and ``Job <task>[<id>](...) ended with status: ...`` after it (a job retried after a
    transient failure runs again under its id). A run left open ends at the worker's kill."""
    runs: list[Run] = []
    open_runs: dict[int, Run] = {}
    for raw in worker.stderr().splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        message = line.get("message", "")
        if message.startswith("Starting job "):
            run = Run(worker.pid, _job_id(message), _table_id(message), _log_time(line), None)
            assert run.job_id not in open_runs, f"job {run.job_id} started twice in worker {worker.pid}"
            open_runs[run.job_id] = run
            runs.append(run)
        elif message.startswith("Job ") and ") ended with status: " in message:
            open_runs.pop(_job_id(message)).end = _log_time(line)
    for run in open_runs.values():
        assert killed_at is not None, f"worker {worker.pid} left job {run.job_id} unfinished without a kill"
        run.end = killed_at
    return runs


def _job_id(message: str) -> int:
    return int(message.split("[", 1)[1].split("]", 1)[0])


def _table_id(message: str) -> str:
    return message.split("table_id=", 1)[1][1:37]


def client_loop(
    bases: list[str], tables: list[int], accepted: list[tuple[str, str]], errors: list[str]
) -> None:
    """Each request to one of ``bases``, chosen at random."""
    with httpx.Client(timeout=30) as client:
        while tables:
            try:
                n = tables.pop()
            except IndexError:
                return
            r = client.post(f"{random.choice(bases)}/table/create", json={"name": f"scale_{n}"})
            if r.status_code != 200:
                errors.append(f"create scale_{n}: {r.status_code} {r.text}")
                continue
            table_id = r.json()["table"]["table_id"]
            accepted.append((table_id, r.json()["operation_id"]))
            for column in ({"name": "a", "type": "integer"}, {"name": "b", "type": "text"}, {"name": "a"}):
                time.sleep(PACE * random.uniform(0.5, 1.5))
                r = client.post(
                    f"{random.choice(bases)}/table/column", json={"table_id": table_id, "column": column}
                )
                if r.status_code != 200:
                    errors.append(f"column {column} of scale_{n}: {r.status_code} {r.text}")
                    continue
                accepted.append((table_id, r.json()["operation_id"]))


def unfinished(core_db: str) -> int:
    with psycopg.connect(core_db, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM rm_operations WHERE finished_at IS NULL").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("layout", ["api-processes", "serves-handing-off"])
def test_two_api_processes_three_workers_one_killed_every_few_seconds(
    layout: str, service_env: dict[str, str], core_db: str, byodb_pg_url: str, procs: Spawn
) -> None:
    rng = random.Random(12)
    env = {**service_env, "SCHEMASAGA_LOG_FORMAT": "json"}
    if layout == "api-processes":
        server, base = start_server(procs, env, "--workers", "2", "--no-worker")
        servers, bases = [server], [base]
    else:
        started = [start_server(procs, env, name=f"serve-{i}") for i in (1, 2)]
        servers, bases = [proc for proc, _ in started], [url for _, url in started]
        server, base = started[0]
    workers = Workers(procs, env)
    for _ in range(WORKERS):
        workers.start()
    wait_until("3 workers running", lambda: len(workers.ready()) == WORKERS, 60, every=0.2)

    tables = list(range(OPERATIONS // PER_TABLE))
    accepted: list[tuple[str, str]] = []
    errors: list[str] = []
    clients = [
        threading.Thread(target=client_loop, args=(bases, tables, accepted, errors)) for _ in range(CLIENTS)
    ]
    for t in clients:
        t.start()
    # Kill while clients send and until every operation has finished.
    while any(t.is_alive() for t in clients) or unfinished(core_db) or len(workers.killed_at) < 3:
        time.sleep(KILL_EVERY)
        workers.kill_one(rng, prefer_busy=any(t.is_alive() for t in clients))
        assert time.monotonic() - server.started_at < DRAIN_TIMEOUT + 60, "operations left unfinished"
    for t in clients:
        t.join()
    assert not errors, errors[:5]
    assert len(accepted) == OPERATIONS // PER_TABLE * PER_TABLE
    assert len(workers.killed_at) >= 3

    # Accepted once and finished once, every operation completed.
    ours = {op for _, op in accepted}
    assert len(ours) == len(accepted)
    with psycopg.connect(core_db, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT event_type, data->>'operation_id' FROM event_store_events WHERE event_type = ANY(%s)",
            (list(ACCEPTING + OUTCOMES),),
        ).fetchall()
        statuses = dict(conn.execute("SELECT operation_id::text, status FROM rm_operations").fetchall())
    acceptances = Counter(op for kind, op in rows if kind in ACCEPTING)
    outcomes = Counter(op for kind, op in rows if kind in OUTCOMES)
    assert acceptances == Counter(ours)
    assert outcomes == Counter(ours), {op: n for op, n in outcomes.items() if n != 1}
    assert {op: statuses[op] for op in ours} == dict.fromkeys(ours, "completed")

    # No saga ran in two processes at once: per table, runs from different processes do not overlap.
    runs: dict[str, list[Run]] = defaultdict(list)
    for worker in workers.all:
        for run in job_runs(worker, workers.killed_at.get(worker.pid)):
            runs[run.table_id].append(run)
    in_serves: list[Run] = []
    if layout == "serves-handing-off":
        in_serves = [run for proc in servers for run in job_runs(proc, None)]
        for run in in_serves:
            runs[run.table_id].append(run)
        assert {run.pid for run in in_serves} == {proc.pid for proc in servers}, "a serve ran no job"
    assert set(runs) == {table for table, _ in accepted}
    killed_mid_job = 0
    for table_id, table_runs in runs.items():
        for one, other in itertools.combinations(table_runs, 2):
            if one.pid != other.pid:
                first, second = sorted((one, other), key=lambda r: r.start)
                assert first.end is not None
                assert first.end <= second.start, (table_id, first, second)
        killed_mid_job += sum(1 for r in table_runs if r.end == workers.killed_at.get(r.pid))
    assert killed_mid_job >= 1, "no kill landed on a running job: the run proved nothing about recovery"
    print(
        f"{len(accepted)} operations on {len(runs)} tables; {len(workers.killed_at)} workers killed, "
        f"{killed_mid_job} job runs cut by a kill; {sum(map(len, runs.values()))} job runs"
        + (f", {len(in_serves)} of them in the serves" if layout == "serves-handing-off" else "")
    )

    # No divergence.
    verify = subprocess.run(
        [CLI, "verify", "--wait", "30"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with httpx.Client(base_url=base, timeout=10) as client:
        # Either API process of one ``serve --workers 2`` counts the operations both accepted; separate
        # ``serve`` processes count their own.
        tables_made = OPERATIONS // PER_TABLE
        expected = {"create_table": tables_made, "add_column": 2 * tables_made, "remove_column": tables_made}
        for _ in range(4 if layout == "api-processes" else 1):
            texts = [client.get(f"{url}/metrics", headers={"Connection": "close"}).text for url in bases]
            counted = {
                kind: sum(
                    metric(text, "schemasaga_operations_accepted_total", kind=kind, engine="postgresql")
                    for text in texts
                )
                for kind in expected
            }
            assert counted == expected
        for table_id in sorted({t for t, _ in accepted})[:5]:
            table = show(client, table_id)
            assert set(table["columns"]) == {"id", "name", "created_at", "updated_at", "b"}
            assert metadata_columns(table) == physical_columns(byodb_pg_url, table["name"])
    assert unfinished(core_db) == 0

    # Stopped all at once (the fixture would stop them one after the other).
    for proc in [*servers, *workers.alive]:
        proc.signal(signal.SIGTERM)
    for proc in [*servers, *workers.alive]:
        assert proc.wait(60) == 0, proc.log_tail()
