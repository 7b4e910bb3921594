"""Item 5: a hypothesis state machine interleaves commands, SIGKILLs of worker processes and short BYODB
outages against the real server, and checks guarantee 1 after every settle: each live table's confirmed
metadata equals its physical schema and every operation is terminal.

One service serves all examples (starting processes per example would dominate the run); the rules read
the live tables from the service, so each example starts from whatever the previous ones left. Default
budget: 5 examples; ``SCHEMASAGA_FAULT_EXAMPLES=200`` for a long run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.fault.harness import (
    Service,
    add_column,
    all_tables,
    check_consistency,
    job_report,
    remove_column,
    settle,
)
from tests.fault.proxy import TcpProxy

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow]

EXAMPLES = int(os.environ.get("SCHEMASAGA_FAULT_EXAMPLES", "5"))
COLUMNS = ["alpha", "beta", "gamma", "delta"]
TYPES = ["integer", "text", "bigint", "boolean", "timestamp"]


def test_random_commands_worker_kills_and_outages_keep_metadata_equal_to_schema(
    make_service: Callable[..., Service], proxied_byodb_url: str, byodb_proxy: TcpProxy
) -> None:
    svc = make_service(byodb_url=proxied_byodb_url, SCHEMASAGA_STALLED_WORKER_TIMEOUT="2")
    svc.start_server()
    svc.start_worker()
    stats: dict[str, Any] = {"commands": 0, "kills": 0, "outages": 0, "settles": [], "answers": {}}
    counter = iter(range(1_000_000))

    class ServiceMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.c = svc.client()

        def _live(self) -> list[str]:
            return [t["table_id"] for t in all_tables(self.c) if t["exists"] or not t["synced"]]

        def _count(self, status: int) -> None:
            stats["commands"] += 1
            stats["answers"][status] = stats["answers"].get(status, 0) + 1
            assert status < 500, f"server error {status}"

        @rule()
        def create(self) -> None:
            r = self.c.post("/table/create", json={"name": f"rnd_{next(counter)}"})
            self._count(r.status_code)

        @rule(pick=st.integers(0, 1000), column=st.sampled_from(COLUMNS), type_=st.sampled_from(TYPES))
        def add(self, pick: int, column: str, type_: str) -> None:
            live = self._live()
            if live:
                self._count(add_column(self.c, live[pick % len(live)], column, type_).status_code)

        @rule(pick=st.integers(0, 1000), column=st.sampled_from(COLUMNS))
        def remove(self, pick: int, column: str) -> None:
            live = self._live()
            if live:
                self._count(remove_column(self.c, live[pick % len(live)], column).status_code)

        @rule(pick=st.integers(0, 1000))
        def delete(self, pick: int) -> None:
            live = self._live()
            if live:
                self._count(
                    self.c.post("/table/delete", json={"table_id": live[pick % len(live)]}).status_code
                )

        @rule()
        def kill_worker(self) -> None:
            for w in svc.workers():
                w.kill()
            stats["kills"] += 1
            svc.start_worker()

        @rule(seconds=st.sampled_from([0.3, 0.8, 1.5]))
        def outage(self, seconds: float) -> None:
            byodb_proxy.cut()
            time.sleep(seconds)
            byodb_proxy.restore()
            stats["outages"] += 1

        @rule()
        def settle_and_check(self) -> None:
            self._check()

        def _check(self) -> None:
            try:
                stats["settles"].append(settle(self.c, timeout=60))
            except AssertionError as exc:
                raise AssertionError(f"{exc}\njobs: {job_report(svc)}\n{svc.logs()[-4000:]}") from exc
            check_consistency(self.c, svc.physical_url)

        def teardown(self) -> None:
            try:
                if byodb_proxy.is_cut:
                    byodb_proxy.restore()
                self._check()
            finally:
                self.c.close()

    run_state_machine_as_test(
        ServiceMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("SCHEMASAGA_FAULT_SEED") is None,
        ),
    )
    settles = stats["settles"]
    summary = (
        f"randomized: {EXAMPLES} examples, {stats['commands']} commands {stats['answers']}, "
        f"{stats['kills']} worker kills, {stats['outages']} outages, {len(settles)} settles "
        f"(max {max(settles):.2f}s)"
    )
    print(summary)
    # The run proved something only if faults were drawn: at least one of each within its budget.
    assert stats["kills"] >= 1 and stats["outages"] >= 1, summary
    assert stats["commands"] >= 1, summary
