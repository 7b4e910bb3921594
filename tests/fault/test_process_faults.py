"""Items 2 and 3: the API process is killed with SIGKILL under concurrent clients, and every core
database connection is terminated repeatedly under load. Only commands answered 200 count as accepted;
each of them must be found after the fault and reach an outcome."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import table_events
from tests.fault.harness import (
    LoadResult,
    Service,
    add_column,
    assert_faults_hit_live_traffic,
    check_consistency,
    create_table,
    events_without_job_or_outcome,
    job_report,
    run_clients,
    settle,
    start_load,
    wait_accepted_since,
)

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow]


def _mixed_command(
    tables: list[str],
) -> Callable[[httpx.Client, random.Random, int], tuple[httpx.Response, str, str]]:
    """Three column additions (unique names, no conflicts) for one table creation."""

    def command(c: httpx.Client, rng: random.Random, i: int) -> tuple[httpx.Response, str, str]:
        if rng.random() < 0.25:
            r = c.post("/table/create", json={"name": f"load_{i}"})
            table_id = r.json()["table"]["table_id"] if r.status_code == 200 else ""
            return r, table_id, "create_table"
        table_id = rng.choice(tables)
        return (
            add_column(c, table_id, f"c_{i}", rng.choice(["integer", "text", "bigint"])),
            table_id,
            "add_column",
        )

    return command


def _check_accepted(svc: Service, c: httpx.Client, load: LoadResult) -> None:
    """Each accepted command has its operation and its events in its table's stream."""
    streams: dict[str, set[str]] = {}
    for a in load.accepted:
        r = c.get(f"/v1/operations/{a.operation_id}")
        assert r.status_code == 200, f"accepted operation {a.operation_id} lost: {r.text}"
        if a.table_id not in streams:
            events = table_events(c, a.table_id)
            streams[a.table_id] = {e["metadata"].get("correlation_id") for e in events}
        assert a.operation_id in streams[a.table_id], f"no event of {a.operation_id} in its table's stream"
    # Nothing half-written: no stored event without an operation, no open operation without a job.
    orphans = svc.query(
        """SELECT e.event_id, e.event_type FROM event_store_events e
           JOIN event_store_events_in_streams s ON s.event_id = e.event_id AND s.stream LIKE 'Table$%%'
           WHERE NOT EXISTS (SELECT 1 FROM rm_operations o
                             WHERE o.operation_id::text = e.metadata ->> 'correlation_id')"""
    )
    assert orphans == []
    assert events_without_job_or_outcome(svc) == []


def _statuses(c: httpx.Client, load: LoadResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in load.accepted:
        status = c.get(f"/v1/operations/{a.operation_id}").json()["status"]
        out[status] = out.get(status, 0) + 1
    return out


def test_api_sigkill_under_concurrent_clients_loses_no_accepted_command(
    make_service: Callable[..., Service],
) -> None:
    svc = make_service()
    svc.start_server()
    svc.start_worker()
    with svc.client() as c:
        tables = [create_table(c, f"base_{i}")[0] for i in range(8)]
        settle(c, timeout=30)

    load = LoadResult()
    stop = threading.Event()
    clients = threading.Thread(
        target=run_clients,
        kwargs={
            "base_url": svc.base_url,
            "clients": 16,
            "total": 5000,
            "command": _mixed_command(tables),
            "stop": stop,
            "stop_on_transport_error": True,
            "result": load,
        },
    )
    clients.start()
    deadline = time.monotonic() + 20
    while len(load.accepted) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert svc.server is not None
    svc.server.kill()  # mid-way: requests are in flight on all 16 clients
    killed_at = time.monotonic()
    clients.join(timeout=60)
    stop.set()
    assert load.accepted and load.transport_errors > 0, load

    svc.start_server()
    restart = time.monotonic() - killed_at
    with svc.client() as c:
        _check_accepted(svc, c, load)
        settled = settle(c, timeout=90)
        statuses = _statuses(c, load)
        assert statuses == {"completed": len(load.accepted)}, statuses
        check_consistency(c, svc.physical_url)
        # The restarted API takes commands again.
        r = add_column(c, tables[0], "after_restart")
        assert r.status_code == 200, r.text
        settle(c, timeout=30)
        check_consistency(c, svc.physical_url)
    print(
        f"API SIGKILL: {len(load.accepted)} accepted, {load.transport_errors} cut requests, "
        f"answers {load.answers}; healthy {restart:.2f}s after the kill, settled in {settled:.2f}s"
    )


def _terminate_core_connections(svc: Service, core_db: str) -> int:
    return len(
        svc.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (core_db,),
        )
    )


def _core_terminations_under_load(svc: Service, *, rounds: int, supervise: bool) -> dict[str, Any]:
    """Terminate every core connection ``rounds`` times during load. With ``supervise``, a worker that
    exits is replaced (as systemd or Kubernetes would), so the no-loss check does not depend on it."""
    svc.start_server()
    svc.start_worker()
    core_db = svc.query("SELECT current_database()")[0][0]
    with svc.client() as c:
        tables = [create_table(c, f"base_{i}")[0] for i in range(6)]
        settle(c, timeout=30)

    # Runs until stopped below (the total is only a cap): a load of a fixed size could end before the
    # last fault on a fast machine, and the fault would then hit no traffic.
    background = start_load(svc.base_url, clients=8, total=100_000, command=_mixed_command(tables))
    terminated, worker_deaths = 0, 0
    cuts: list[tuple[float, float]] = []
    for _ in range(rounds):
        time.sleep(0.6)
        # Each round cuts connections in use by commands being accepted (the load is still live).
        wait_accepted_since(background.result, cuts[-1][1] if cuts else 0.0, count=5)
        began = time.monotonic()
        terminated += _terminate_core_connections(svc, core_db)
        cuts.append((began, time.monotonic()))
        if supervise and not svc.workers():
            worker_deaths += 1
            svc.start_worker()
    last_cut = time.monotonic()
    with svc.client() as c:
        while True:  # until the API accepts a command again
            try:
                r = add_column(c, tables[0], f"probe_{time.monotonic_ns()}")
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - last_cut < 30, "the API did not recover within 30 s"
            time.sleep(0.1)
    api_recovery = time.monotonic() - last_cut
    wait_accepted_since(background.result, cuts[-1][1], count=5)
    load = background.join(timeout=0)  # stop the clients after their request in flight
    assert_faults_hit_live_traffic(load, cuts)
    if supervise and not svc.workers():
        worker_deaths += 1
        svc.start_worker()
    assert svc.server is not None and svc.server.alive(), svc.logs()[-5000:]
    assert load.accepted, load.answers
    return {
        "load": load,
        "terminated": terminated,
        "api_recovery": api_recovery,
        "worker_deaths": worker_deaths,
    }


def test_core_connections_terminated_under_load_lose_no_accepted_command(
    make_service: Callable[..., Service],
) -> None:
    svc = make_service()
    run = _core_terminations_under_load(svc, rounds=6, supervise=True)
    load: LoadResult = run["load"]
    with svc.client() as c:
        try:
            settled = settle(c, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\njobs: {job_report(svc)}\n{svc.logs()[-6000:]}") from exc
        _check_accepted(svc, c, load)
        statuses = _statuses(c, load)
        assert statuses == {"completed": len(load.accepted)}, statuses
        check_consistency(c, svc.physical_url)
    # 503s are commands refused while their connection died (their transaction rolled back).
    assert set(load.answers) <= {200, 503}, load.refusals
    print(
        f"core terminations: {run['terminated']} backends over 6 rounds; {len(load.accepted)} accepted, "
        f"answers {load.answers}; API accepting {run['api_recovery']:.2f}s after the last round; "
        f"worker processes that exited and were replaced: {run['worker_deaths']}; settled in {settled:.2f}s"
    )


def test_worker_survives_core_connection_terminations(make_service: Callable[..., Service]) -> None:
    svc = make_service()
    run = _core_terminations_under_load(svc, rounds=8, supervise=False)
    deaths = [p for p in svc.processes if p.name.startswith("worker") and not p.alive()]
    assert deaths == [], svc.logs()[-3000:]
    with svc.client() as c:
        settle(c, timeout=60)
        assert _statuses(c, run["load"]) == {"completed": len(run["load"].accepted)}


def test_a_job_the_queue_gives_a_live_worker_that_does_not_run_it_is_given_back(
    make_service: Callable[..., Service],
) -> None:
    """The state a connection cut leaves when the answer of the fetch, or the worker's report of the
    job's end, is lost: the job is ``doing`` under a worker that is alive and sends heartbeats but
    does not run it. The stalled-worker check cannot see it; the worker's own check must."""
    svc = make_service()
    svc.start_server()
    with svc.client() as c:
        table_id, operation_id = create_table(c, "lost_job")
        # Keep the job out of reach until the worker is registered, then hand it to that worker
        # the way procrastinate's fetch does, without the worker ever hearing of it.
        svc.query("UPDATE procrastinate_jobs SET scheduled_at = now() + interval '1 day' RETURNING id")
        svc.start_worker()
        deadline = time.monotonic() + 30
        while not (workers := svc.query("SELECT id FROM procrastinate_workers")):
            assert time.monotonic() < deadline, svc.logs()[-3000:]
            time.sleep(0.1)
        (worker_id,) = workers[0]
        held = svc.query(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s, scheduled_at = NULL"
            " WHERE status = 'todo' RETURNING id",
            (worker_id,),
        )
        assert len(held) == 1, held

        settle(c, timeout=30)
        op = c.get(f"/v1/operations/{operation_id}").json()
        assert op["status"] == "completed", op
        table = c.get(f"/v1/tables/{table_id}").json()
        assert table["exists"] and table["synced"], table
        check_consistency(c, svc.physical_url)
    # The same worker, still alive, gave the job back: it was not the stalled-worker check.
    assert svc.workers() and svc.query("SELECT count(*) FROM procrastinate_workers")[0][0] == 1
    assert f"retrying job {held[0][0]}: the queue gives it to this worker" in svc.logs()
