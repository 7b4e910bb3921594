"""The live feed across kills: a consumer process (feed_consumer.py) follows ``GET /v1/events/stream``
while changes are made; it is killed (SIGKILL) and started again twice, resuming with ``Last-Event-ID``,
and the service is killed and started again once in the middle. At the end its file holds every event of
the log exactly once, in position order.

``SCHEMASAGA_FEED_CHANGES`` changes (default 40; ``make feed-long`` runs 1,000).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest

from schemasaga.client import Client, SchemasagaError
from tests.acceptance.conftest import Proc, Spawn, free_port, wait_healthy, wait_until

pytestmark = [pytest.mark.acceptance]

CHANGES = int(os.environ.get("SCHEMASAGA_FEED_CHANGES", "40"))
TABLES = 4
CONSUMER = Path(__file__).with_name("feed_consumer.py")
T = TypeVar("T")


def logged(core: str) -> list[str]:
    with psycopg.connect(core) as conn:
        rows = conn.execute(
            "SELECT position, event_type FROM event_store_events ORDER BY position"
        ).fetchall()
    return [f"{p} {t}" for p, t in rows]


def unsettled(core: str) -> int:
    with psycopg.connect(core) as conn:
        row = conn.execute(
            "SELECT count(*) FROM rm_operations WHERE status NOT IN ('completed', 'rejected')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def persist(what: str, send: Callable[[], T], deadline: float) -> T:
    """Send a change until the service takes it: across the service's restart, with the same
    Idempotency-Key each time (so at most one operation)."""
    while True:
        try:
            return send()
        except (SchemasagaError, httpx.TransportError) as exc:
            if isinstance(exc, SchemasagaError) and not exc.retryable:
                raise
            assert time.monotonic() < deadline, f"{what}: not accepted ({exc})"
            time.sleep(0.2)


def test_a_killed_consumer_sees_every_event_once_in_order_across_a_service_restart(
    service_env: dict[str, str], core_db: str, procs: Spawn, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start_service(name: str) -> Proc:
        proc = procs(name, ["serve", "--port", str(port)], service_env)
        wait_healthy(proc, port)
        return proc

    out = tmp_path / "consumed.txt"
    consumer_env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start_consumer() -> subprocess.Popen[bytes]:
        with (tmp_path / "consumer.err").open("ab") as err:
            return subprocess.Popen(
                [sys.executable, str(CONSUMER), url, str(out)],
                env=consumer_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    service = start_service("server-1")
    consumer = start_consumer()
    kills = {CHANGES // 4: "consumer", CHANGES // 2: "service", (3 * CHANGES) // 4: "consumer"}
    deadline = time.monotonic() + 120 + CHANGES * 0.5
    try:
        with Client(url, retries=0) as client:
            tables = [
                str(persist("create", lambda i=i: client.tables.create(f"feed_{i}").table_id, deadline))
                for i in range(TABLES)
            ]
            for n in range(CHANGES):
                what = kills.get(n)
                if what == "consumer":
                    os.killpg(consumer.pid, signal.SIGKILL)
                    consumer.wait(10)
                    consumer = start_consumer()
                elif what == "service":
                    service.signal(signal.SIGKILL)
                    service.wait(10)
                    service = start_service("server-2")
                table = tables[n % TABLES]
                key = f"feed-change-{n}"
                persist(
                    f"change {n}",
                    lambda table=table, n=n, key=key: client.columns.add(
                        table, {"name": f"c{n}", "type": "integer"}, idempotency_key=key
                    ),
                    deadline,
                )
        wait_until("every operation finished", lambda: unsettled(core_db) == 0, deadline - time.monotonic())
        expected = logged(core_db)
        try:
            wait_until(
                "the consumer caught up",
                lambda: out.read_text().splitlines() == expected or None,
                30,
                every=0.2,
            )
        except AssertionError:
            got = out.read_text().splitlines()
            missing, extra = sorted(set(expected) - set(got))[:20], sorted(set(got) - set(expected))[:20]
            raise AssertionError(
                f"consumed {len(got)} lines, {len(expected)} events logged; missing {missing}, not logged "
                f"{extra}; "
                f"consumer: {(tmp_path / 'consumer.err').read_text()[-2000:]}"
            ) from None
    finally:
        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait(10)
    consumed = out.read_text().splitlines()
    positions = [int(line.split()[0]) for line in consumed]
    assert positions == sorted(set(positions))
    assert consumed == logged(core_db)
    # Worth the name: changes across the kills, events of each kind.
    assert len(consumed) > CHANGES * 3
    print(
        f"feed: {CHANGES} changes, {len(consumed)} events consumed once each, in order, across 2 consumer "
        "kills and 1 service restart"
    )


def test_the_service_stops_on_sigterm_while_a_client_follows_the_feed(
    service_env: dict[str, str], procs: Spawn
) -> None:
    """uvicorn waits for the answers in progress before it stops; a live feed's must end then (its client
    resumes after a restart), or the service would never stop."""
    proc = procs("server", ["serve", "--port", str(port := free_port())], service_env)
    wait_healthy(proc, port)
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http,
        http.stream("GET", "/v1/events/stream") as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "id: " in "\n".join(lines)  # the stream ended (after the events of the start)
