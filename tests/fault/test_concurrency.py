"""Item 4: 50 clients send random column additions and removals to 5 tables through the real server, with
two worker processes. Per table, operations must finish one at a time in acceptance order, and the
metadata must equal the physical schema afterwards."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import table_events
from tests.fault.harness import (
    Service,
    add_column,
    check_consistency,
    create_table,
    remove_column,
    run_clients,
    settle,
)

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow]

ACCEPTANCE_EVENTS = {"TableCreated", "TableChanged", "TableDeleted"}
COLUMNS = [f"col_{i}" for i in range(6)]
TYPES = ["integer", "text", "bigint", "boolean"]


def assert_acceptance_order(events: list[dict[str, Any]]) -> int:
    """The worker's events of a table's stream come in blocks, one operation at a time, in the order
    the operations were accepted; every accepted operation has an outcome. Returns the operation count."""
    accepted = [e["metadata"]["correlation_id"] for e in events if e["event_type"] in ACCEPTANCE_EVENTS]
    worked: list[str] = []
    for e in events:
        if e["event_type"] in ACCEPTANCE_EVENTS:
            continue
        op = e["metadata"]["correlation_id"]
        if not worked or worked[-1] != op:
            assert op not in worked, f"operation {op} ran again after another one started: {worked}"
            worked.append(op)
    assert worked == accepted, f"ran in order {worked}, accepted in order {accepted}"
    outcomes = [e for e in events if e["event_type"].endswith(("Confirmed", "Rejected"))]
    assert [e["metadata"]["correlation_id"] for e in outcomes] == accepted
    return len(accepted)


def test_fifty_clients_five_tables_two_workers(make_service: Callable[..., Service]) -> None:
    svc = make_service()
    svc.start_server()
    svc.start_worker()
    svc.start_worker()
    with svc.client() as c:
        tables = [create_table(c, f"conc_{i}")[0] for i in range(5)]

    def command(c: httpx.Client, rng: random.Random, i: int) -> tuple[httpx.Response, str, str]:
        table_id = rng.choice(tables)
        name = rng.choice(COLUMNS)
        if rng.random() < 0.55:
            return add_column(c, table_id, name, rng.choice(TYPES)), table_id, "add_column"
        return remove_column(c, table_id, name), table_id, "remove_column"

    load = run_clients(svc.base_url, clients=50, total=300, command=command, seed=4)
    assert load.transport_errors == 0
    assert all(400 <= code < 500 or code == 200 for code in load.answers), load.answers
    assert len(load.accepted) > 20, load.answers

    with svc.client() as c:
        settled = settle(c, timeout=120)
        ops = 0
        for table_id in tables:
            ops += assert_acceptance_order(table_events(c, table_id))
        statuses = {
            a.operation_id: c.get(f"/v1/operations/{a.operation_id}").json()["status"] for a in load.accepted
        }
        assert set(statuses.values()) == {"completed"}, statuses
        check_consistency(c, svc.physical_url)
    print(f"concurrency: answers {load.answers}; {ops} operations in 5 streams; settled in {settled:.2f}s")
