"""Many clients and several workers against the real server processes."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest

from tests.acceptance.conftest import (
    Proc,
    Spawn,
    create_table,
    metadata_columns,
    operation,
    physical_columns,
    start_server,
    wait_synced,
)
from tests.conftest import table_events

pytestmark = [pytest.mark.acceptance]

T = TypeVar("T")
ACCEPTING = {"TableCreated", "TableChanged", "TableDeleted"}
CONFIRMING = {"TableCreationConfirmed", "TableChangeConfirmed", "TableDeletionConfirmed"}


def at_once(n: int, call: Callable[[int, httpx.Client], T], base_url: str) -> list[T]:
    """``call(i, client)`` for each i in range(n), each on its own thread and client, released together."""
    barrier = threading.Barrier(n)

    def one(i: int) -> T:
        with httpx.Client(base_url=base_url, timeout=30.0) as client:
            client.get("/healthz")  # connect before the barrier, so the requests really overlap
            barrier.wait(timeout=30)
            return call(i, client)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def stream_events(client: httpx.Client, table_id: str) -> list[dict[str, Any]]:
    return table_events(client, table_id)


def assert_one_at_a_time_in_acceptance_order(events: list[dict[str, Any]]) -> list[str]:
    """Guarantee 4 on one table's stream; returns the accepted operation ids in order."""
    accepted = [e["data"]["operation_id"] for e in events if e["event_type"] in ACCEPTING]
    progress = [e["data"]["operation_id"] for e in events if e["event_type"] not in ACCEPTING]
    # Every operation's saga events come after those of the operations accepted before it, and the
    # events of two operations never interleave.
    assert list(dict.fromkeys(progress)) == accepted
    assert progress == sorted(progress, key=accepted.index)
    return accepted


def assert_each_operation_ran_once(events: list[dict[str, Any]]) -> None:
    per_op: dict[str, list[tuple[str, Any]]] = {}
    for e in events:
        per_op.setdefault(e["data"]["operation_id"], []).append((e["event_type"], e["data"].get("step")))
    for op_id, recorded in per_op.items():
        types = [t for t, _ in recorded]
        assert sum(t in CONFIRMING for t in types) == 1, (op_id, types)
        assert "SagaAttemptFailed" not in types, (op_id, types)
        assert len(set(recorded)) == len(recorded), f"operation {op_id} recorded a step twice: {recorded}"


@pytest.mark.slow
def test_many_concurrent_clients_changing_two_tables(
    service_env: dict[str, str], byodb_pg_url: str, procs: Spawn
) -> None:
    _, base_url = start_server(procs, service_env)
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        first, _ = create_table(client, "crowded_a")
        second, _ = create_table(client, "crowded_b")
        # 16 clients on the first table, 8 on the second; creation may still be in flight.
        targets = [(first, f"a{i:02d}") for i in range(16)] + [(second, f"b{i:02d}") for i in range(8)]

        def add(i: int, c: httpx.Client) -> tuple[str, str, int, Any]:
            table_id, name = targets[i]
            r = c.post("/table/column", json={"table_id": table_id, "column": {"name": name, "type": "text"}})
            return table_id, name, r.status_code, r.json()

        answers = at_once(len(targets), add, base_url)
        refused = [a for a in answers if a[2] != 200 or a[3].get("status") != "ok"]
        assert not refused, refused

        for table_id, name, count in ((first, "crowded_a", 16), (second, "crowded_b", 8)):
            table = wait_synced(client, table_id, timeout=90)
            added = {n for t, n, _, _ in answers if t == table_id}
            assert len(added) == count and added <= set(table["columns"])
            assert metadata_columns(table) == physical_columns(byodb_pg_url, name)

            events = stream_events(client, table_id)
            accepted = assert_one_at_a_time_in_acceptance_order(events)
            ops = {a[3]["operation_id"] for a in answers if a[0] == table_id}
            assert ops <= set(accepted) and len(accepted) == count + 1
            assert_each_operation_ran_once(events)
            for op_id in accepted:
                assert operation(client, op_id)["status"] == "completed"


STARTED_JOB = re.compile(r"Starting job schemasaga\.run_saga\[(\d+)\]")


def started_jobs(worker: Proc) -> list[int]:
    return [int(m) for m in STARTED_JOB.findall(worker.stderr())]


@pytest.mark.slow
def test_two_workers_share_one_core_database(
    service_env: dict[str, str], byodb_pg_url: str, procs: Spawn
) -> None:
    _, base_url = start_server(procs, service_env, "--no-worker")
    workers = [procs(f"worker-{i}", ["worker"], service_env) for i in (1, 2)]
    for w in workers:
        w.wait_for_log("Starting worker", timeout=30)

    names = [f"shared_{i:02d}" for i in range(20)]
    created = at_once(len(names), lambda i, c: create_table(c, names[i]), base_url)
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for (table_id, op_id), name in zip(created, names, strict=True):
            table = wait_synced(client, table_id, timeout=60)
            assert table["exists"] is True, table
            assert operation(client, op_id)["status"] == "completed"
            assert metadata_columns(table) == physical_columns(byodb_pg_url, name)
            events = stream_events(client, table_id)
            assert [e["event_type"] for e in events if e["event_type"] in CONFIRMING] == [
                "TableCreationConfirmed"
            ]
            assert_each_operation_ran_once(events)

    # Every job was started by exactly one worker, once.
    per_worker = [started_jobs(w) for w in workers]
    all_jobs = Counter(j for jobs in per_worker for j in jobs)
    assert len(all_jobs) == len(names) and set(all_jobs.values()) == {1}, all_jobs
    print(f"jobs run per worker: {[len(j) for j in per_worker]}")
    for w in workers:
        assert w.returncode is None, w.log_tail()
