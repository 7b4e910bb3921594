"""The worker keeps the job table's planner statistics true to its size, so a burst of jobs does not
leave procrastinate's job fetch planned for an empty table (issue 12: one job at a time for ~100 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.jobs.queries import RUN_SAGA
from schemasaga.jobs.watchdog import queue_statistics_stale, refresh_queue_statistics
from tests.integration.conftest import running_service

# Jobs no worker takes yet (scheduled for tomorrow), each under its own lock like a burst of creates.
INSERT_JOBS = """
INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, scheduled_at)
SELECT 'default', %(task)s, 'table:' || gen_random_uuid(), '{}', now() + interval '1 day'
FROM generate_series(1, %(n)s)
"""


async def analyzed_rows(service: Container) -> float:
    async with service.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'procrastinate_jobs'::regclass")
        ).fetchone()
    assert row is not None
    return float(row[0])


async def add_jobs(service: Container, n: int) -> None:
    async with service.pool.connection() as conn:
        await conn.execute(INSERT_JOBS, {"task": RUN_SAGA, "n": n})


def test_stale_means_far_from_the_size_the_statistics_say() -> None:
    assert not queue_statistics_stale(0, 0)
    assert not queue_statistics_stale(100, 0)
    assert queue_statistics_stale(101, 0)
    assert not queue_statistics_stale(1400, 1000)
    assert queue_statistics_stale(1601, 1000)
    assert queue_statistics_stale(0, 1000)  # a drained queue is re-planned too


async def test_a_burst_of_jobs_is_analyzed_once(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    async with running_service(settings_factory(byodb_pg_url), worker=False) as service:
        async with service.pool.connection() as conn:
            await conn.execute("ANALYZE procrastinate_jobs")  # statistics of the empty table
        await add_jobs(service, 500)
        assert await refresh_queue_statistics(service.jobs)
        assert await analyzed_rows(service) == 500
        assert not await refresh_queue_statistics(service.jobs)  # nothing moved since


async def test_the_worker_analyzes_the_job_table_after_a_burst(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    async with running_service(settings_factory(byodb_pg_url, queue_analyze_interval=0.2)) as service:
        await add_jobs(service, 500)
        deadline = time.monotonic() + 20
        while await analyzed_rows(service) < 500:
            if time.monotonic() > deadline:
                pytest.fail("the worker did not analyze procrastinate_jobs after 500 jobs were queued")
            await asyncio.sleep(0.1)
