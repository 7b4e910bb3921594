"""Item 1: the BYODB goes away behind a TCP proxy while commands keep arriving.

The real CLI runs as subprocesses (API without worker, plus one worker); the service reaches the BYODB
only through :class:`~tests.fault.proxy.TcpProxy`, which the test cuts and restores."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import table_events
from tests.fault.harness import (
    TERMINAL,
    Service,
    add_column,
    check_consistency,
    create_table,
    events_without_job_or_outcome,
    open_operations,
    settle,
)
from tests.fault.proxy import TcpProxy

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow]


def _operation(c: httpx.Client, operation_id: str) -> dict[str, object]:
    r = c.get(f"/v1/operations/{operation_id}")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_outage_shorter_than_the_retry_budget_heals(
    make_service: Callable[..., Service], proxied_byodb_url: str, byodb_proxy: TcpProxy
) -> None:
    # Budget: 8 attempts, 0.2 s doubling to 1 s: about 5.4 s of waits; the outage lasts 2.5 s.
    svc = make_service(byodb_url=proxied_byodb_url)
    svc.start_server()
    svc.start_worker()
    with svc.client() as c:
        before, _ = create_table(c, "before_outage")
        settle(c, timeout=30)

        byodb_proxy.cut()
        ops: dict[str, str] = {}
        tables = [before]
        for i in range(3):
            tid, op = create_table(c, f"during_outage_{i}")
            ops[op] = "create"
            tables.append(tid)
        for i, tid in enumerate(tables):
            r = add_column(c, tid, f"age_{i}")
            assert r.status_code == 200, r.text  # accepted although the BYODB is down
            ops[r.json()["operation_id"]] = "add_column"
        time.sleep(2.5)
        assert open_operations(c), "the operations should still be waiting for the BYODB"
        byodb_proxy.restore()
        recovery = settle(c, timeout=60)

        seen = {op: _operation(c, op) for op in ops}
        assert {o["status"] for o in seen.values()} == {"completed"}, seen
        # Every saga that started during the outage failed at least once and was retried.
        assert all(int(str(o["attempts"])) > 1 for o in seen.values() if o["kind"] == "create_table"), seen
        check_consistency(c, svc.physical_url)
    attempts = [o["attempts"] for o in seen.values()]
    print(f"short outage: settled {recovery:.2f}s after restore; attempts {attempts}")


def test_outage_longer_than_the_retry_budget_rejects_and_never_sticks(
    make_service: Callable[..., Service], proxied_byodb_url: str, byodb_proxy: TcpProxy
) -> None:
    svc = make_service(
        byodb_url=proxied_byodb_url,
        SCHEMASAGA_RETRY_MAX_ATTEMPTS="3",
        SCHEMASAGA_RETRY_BASE_DELAY="0.1",
        SCHEMASAGA_RETRY_MAX_DELAY="0.2",
    )
    svc.start_server()
    svc.start_worker()
    with svc.client() as c:
        existing, _ = create_table(c, "existing")
        settle(c, timeout=30)

        byodb_proxy.cut()
        _, create_op = create_table(c, "doomed")
        r = add_column(c, existing, "age")
        assert r.status_code == 200, r.text
        add_op = r.json()["operation_id"]
        r = add_column(c, existing, "queued_behind")
        assert r.status_code == 200, r.text
        queued_op = r.json()["operation_id"]

        # The budget runs out while the BYODB is still down: every saga ends, none is left open.
        settled_in = settle(c, timeout=45)
        assert events_without_job_or_outcome(svc) == []
        outcomes = {op: _operation(c, op) for op in (create_op, add_op, queued_op)}
        assert {o["status"] for o in outcomes.values()} <= set(TERMINAL)
        assert outcomes[create_op]["status"] == "rejected", outcomes
        assert outcomes[add_op]["status"] == "rejected", outcomes
        assert "gave up after 3 attempts" in str(outcomes[add_op]["last_error"]), outcomes
        stream = table_events(c, existing)
        rejected_events = [e["event_type"] for e in stream if "Rejected" in e["event_type"]]
        assert rejected_events, "the rejection must be an event of the table's stream"

        byodb_proxy.restore()
        settle(c, timeout=30)
        check_consistency(c, svc.physical_url)
        shown = c.post("/table/show", json={"table_id": existing}).json()["table"]
        assert "age" not in shown["columns"]

        # After the outage, the same table takes changes again.
        r = add_column(c, existing, "age")
        assert r.status_code == 200, r.text
        settle(c, timeout=30)
        assert _operation(c, r.json()["operation_id"])["status"] == "completed"
        check_consistency(c, svc.physical_url)
    print(f"long outage: all sagas terminal {settled_in:.2f}s after the cut")
