"""A worker that is alive keeps its heartbeat, so no other worker takes its running jobs for stalled."""

from __future__ import annotations

import asyncio

import httpx

from schemasaga.bootstrap import Container
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
