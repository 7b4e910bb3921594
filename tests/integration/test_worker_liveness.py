"""A worker that is alive keeps its heartbeat, so no other worker takes its running jobs for stalled."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Callable

import httpx
import procrastinate.worker
import pytest

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from tests.integration.conftest import wait_synced
from tests.integration.test_saga_flow import create_table


async def heartbeat_age(service: Container) -> float:
    async with service.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT extract(epoch FROM now() - max(last_heartbeat)) FROM procrastinate_workers"
            )
        ).fetchone()
    assert row is not None and row[0] is not None
    return float(row[0])


async def test_the_heartbeat_outlives_procrastinates_heartbeat_task(
    client: httpx.AsyncClient, service: Container
) -> None:
    # The worker is up once it has run a saga.
    await wait_synced(client, await create_table(client, "alive"))
    # procrastinate's heartbeat task ends for good at its first error; end it as such an error would.
    beats = [t for t in asyncio.all_tasks() if t.get_name() == "update_heartbeats"]
    assert len(beats) == 1
    beats[0].cancel()

    timeout = service.settings.stalled_worker_timeout
    await asyncio.sleep(timeout * 1.5)
    # Other workers would otherwise take its running jobs for stalled and run them a second time.
    assert await heartbeat_age(service) < timeout


async def test_a_worker_that_stops_on_its_own_is_started_again(
    client: httpx.AsyncClient, service: Container, caplog: pytest.LogCaptureFixture
) -> None:
    """procrastinate stops its own worker when it finds one of its side tasks failed (its issue #1597:
    when that happens changes between versions): ``run()`` then returns as if asked to stop. The
    process must not go on answering requests with no worker: the worker is started again."""
    caplog.set_level(logging.INFO, logger="procrastinate.worker")
    await wait_synced(client, await create_table(client, "before"))
    [worker] = [
        o
        for o in gc.get_objects()
        if isinstance(o, procrastinate.worker.Worker) and o.run_task is not None and not o.run_task.done()
    ]
    worker.stop()  # as procrastinate's side-task monitor does
    stopped = await wait_for_log(lambda: "Stopped worker" in caplog.text, timeout=15)
    assert stopped, "procrastinate did not stop its worker"
    table = await wait_synced(client, await create_table(client, "after"), timeout=30)
    assert table["exists"] is True


async def test_serve_exits_with_an_error_when_its_worker_ends_for_good(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemasaga import worker as worker_module
    from schemasaga.cli import serve as serve_module

    async def broken_worker(*_: object, **__: object) -> None:
        await asyncio.sleep(0.5)
        raise RuntimeError("the worker cannot go on")

    monkeypatch.setattr(worker_module, "run_worker", broken_worker)
    settings = settings_factory(byodb_pg_url, port=free_port())
    status = await asyncio.wait_for(serve_module._serve(settings, with_worker=True), timeout=30)
    assert status == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for_log(found: Callable[[], bool], *, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not found():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True
