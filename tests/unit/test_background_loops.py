"""The worker's background loops end when they are cancelled, even when the query they were in turns the
cancellation into another error (found by the suite: a worker's shutdown waited forever for its
queue-statistics loop, which had caught the error as a failed round and slept on)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from schemasaga.jobs.watchdog import keep_queue_statistics, stalled_job_watchdog


class SwallowingConnector:
    """A connector whose query, cancelled, does not raise CancelledError: it raises what a closed
    connection would (the loop sees an ordinary failure), or answers as if nothing happened."""

    def __init__(self, swallow: str) -> None:
        self.swallow = swallow
        self.querying = asyncio.Event()

    async def _hang(self) -> Any:
        self.querying.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self.swallow == "raises":
                raise RuntimeError("the connection was closed") from None
        return [] if self.swallow == "returns" else None

    async def execute_query_one_async(self, query: str, **arguments: Any) -> Any:
        await self._hang()
        return {"rows": 0, "analyzed_rows": 0}

    async def execute_query_all_async(self, query: str, **arguments: Any) -> Any:
        return await self._hang()

    async def execute_query_async(self, query: str, **arguments: Any) -> Any:
        return await self._hang()

    async def get_stalled_jobs(self, **arguments: Any) -> Any:  # (procrastinate's job manager)
        return await self._hang()


@pytest.mark.parametrize("swallow", ["raises", "returns"])
@pytest.mark.parametrize("loop", ["queue_statistics", "stalled_jobs"])
async def test_a_loop_cancelled_mid_query_ends(loop: str, swallow: str) -> None:
    connector = SwallowingConnector(swallow)
    app: Any = SimpleNamespace(connector=connector, job_manager=connector)
    if loop == "queue_statistics":
        task = asyncio.create_task(keep_queue_statistics(app, every=0.01))
    else:
        task = asyncio.create_task(stalled_job_watchdog(app, stalled_after=1.0, every=0.01))
    await asyncio.wait_for(connector.querying.wait(), timeout=5)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the loop caught its own cancellation and ran on"
    assert task.cancelled()
