"""A saga job deferred in this process is handed to this process's worker (jobs/handoff.py) only when the
queue's fetch would give it to that worker: still waiting, the first of its table's lock, no job of the
table running anywhere. It then runs once, as a fetched job does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import httpx
import pytest

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.jobs.handoff import ClaimingWorker, inside_job
from tests.integration.conftest import running_service, wait_synced
from tests.integration.test_saga_flow import create_table


class Runs:
    """A saga runner that records what it is asked to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[UUID, UUID, int | None]] = []

    async def run(self, *, table_id: UUID, operation_id: UUID, job_id: int | None = None) -> None:
        self.calls.append((table_id, operation_id, job_id))


@pytest.fixture
async def bare(settings_factory: Callable[..., Settings], byodb_pg_url: str) -> AsyncIterator[Container]:
    """The container with no worker fetching: jobs move only when the test or the hand-off moves them."""
    async with running_service(settings_factory(byodb_pg_url), worker=False) as container:
        yield container


@contextlib.asynccontextmanager
async def local_worker(container: Container, runs: Runs) -> AsyncIterator[ClaimingWorker]:
    """A registered worker that takes handed-over jobs (its fetch loop not running)."""
    worker = ClaimingWorker(
        app=container.jobs,
        concurrency=2,
        additional_context={"saga_runner": runs},
        install_signal_handlers=False,
        delete_jobs="successful",
    )
    worker.worker_id = await container.jobs.job_manager.register_worker()
    worker.taking = True
    assert container.handoff is not None
    container.handoff.attach(worker)
    try:
        yield worker
    finally:
        container.handoff.detach(worker)
        if worker._running_jobs:
            await asyncio.wait(list(worker._running_jobs))


async def defer(container: Container, table_id: UUID) -> int:
    async with container.pool.connection() as conn, conn.transaction():
        return await container.scheduler.run_saga(conn=conn, table_id=table_id, operation_id=uuid.uuid4())


async def job(container: Container, job_id: int) -> dict[str, Any] | None:
    async with container.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT status::text, worker_id FROM procrastinate_jobs WHERE id = %s", (job_id,)
            )
        ).fetchone()
    return None if row is None else {"status": row[0], "worker_id": row[1]}


async def hand_over(container: Container, worker: ClaimingWorker, *job_ids: int) -> None:
    handoff = container.handoff
    assert handoff is not None
    handoff.offer([job_id for job_id in job_ids if handoff.expect(job_id)])  # as a unit of work does
    await handoff.close()
    if worker._running_jobs:
        await asyncio.wait(list(worker._running_jobs))


async def test_a_ready_job_runs_once_in_the_local_worker(bare: Container) -> None:
    runs = Runs()
    table_id = uuid.uuid4()
    async with local_worker(bare, runs) as worker:
        job_id = await defer(bare, table_id)
        await hand_over(bare, worker, job_id)
        assert [(t, j) for t, _, j in runs.calls] == [(table_id, job_id)]
        assert await job(bare, job_id) is None  # ended through the worker: succeeded and deleted
        await hand_over(bare, worker, job_id)  # offered again: nothing left to run
        assert len(runs.calls) == 1
        assert worker._job_semaphore._value == 2  # every slot given back


async def test_a_job_waiting_behind_another_of_its_table_is_not_taken(bare: Container) -> None:
    runs = Runs()
    table_id = uuid.uuid4()
    async with local_worker(bare, runs) as worker:
        first = await defer(bare, table_id)
        second = await defer(bare, table_id)
        await hand_over(bare, worker, second)
        assert runs.calls == [] and await job(bare, second) == {"status": "todo", "worker_id": None}
        await hand_over(bare, worker, first)
        assert [j for _, _, j in runs.calls] == [first]
        await hand_over(bare, worker, second)  # now the first of its lock
        assert [j for _, _, j in runs.calls] == [first, second]


async def test_a_job_of_a_table_running_elsewhere_is_not_taken(bare: Container) -> None:
    """Another worker fetched the table's job: neither it nor the next job of the table runs here."""
    runs = Runs()
    table_id = uuid.uuid4()
    manager = bare.jobs.job_manager
    other = await manager.register_worker()
    async with local_worker(bare, runs) as worker:
        running = await defer(bare, table_id)
        fetched = await manager.fetch_job(queues=None, worker_id=other)
        assert fetched is not None and fetched.id == running
        waiting = await defer(bare, table_id)
        await hand_over(bare, worker, running, waiting)
        assert runs.calls == []
        assert await job(bare, running) == {"status": "doing", "worker_id": other}
        assert await job(bare, waiting) == {"status": "todo", "worker_id": None}
        assert worker._job_semaphore._value == 2


async def test_nothing_is_taken_by_a_stopping_worker_nor_from_inside_a_job(bare: Container) -> None:
    runs = Runs()
    async with local_worker(bare, runs) as worker:
        with inside_job():  # the fallback job a saga defers as it goes on with the next change
            job_id = await defer(bare, uuid.uuid4())
            await hand_over(bare, worker, job_id)
        worker.stop()
        await hand_over(bare, worker, job_id)
        assert runs.calls == [] and await job(bare, job_id) == {"status": "todo", "worker_id": None}


async def test_the_service_hands_its_jobs_to_its_worker(
    client: httpx.AsyncClient, service: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: each created table's saga ran once, handed over (no fetch round), and no job is left."""
    assert service.handoff is not None
    runs: dict[UUID, int] = {}
    run = service.runner.run

    async def counted(*, table_id: UUID, operation_id: UUID, job_id: int | None = None) -> None:
        runs[table_id] = runs.get(table_id, 0) + 1
        await run(table_id=table_id, operation_id=operation_id, job_id=job_id)

    monkeypatch.setattr(service.runner, "run", counted)
    tables = [await create_table(client, f"handed_{i}") for i in range(3)]
    for table_id in tables:
        assert (await wait_synced(client, table_id))["exists"] is True
    assert service.handoff.handed >= 1
    assert runs == {UUID(t): 1 for t in tables}
    for _ in range(100):  # the last job's end is recorded just after its outcome
        async with service.pool.connection() as conn:
            left = await (await conn.execute("SELECT count(*) FROM procrastinate_jobs")).fetchone()
        if left == (0,):
            break
        await asyncio.sleep(0.05)
    assert left == (0,)


async def test_a_job_the_hand_over_does_not_take_is_fetched_at_once(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue's notice of a job offered here starts no fetch round; when the claim does not take
    the job (another worker's fetch came first, a slot was not free), the hand-over starts that round
    itself, rather than leave the job to the next poll (half a minute here)."""
    settings = settings_factory(byodb_pg_url, job_polling_interval=30.0)
    async with running_service(settings) as service:
        assert service.handoff is not None

        async def lost_race(job_id: int, worker_id: int) -> None:
            return None

        monkeypatch.setattr(service.handoff, "_claim", lost_race)
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            # Once the worker polled for the first time: later jobs are found by notices alone.
            await asyncio.sleep(0.5)
            table_id = await create_table(client, "fetched")
            assert (await wait_synced(client, table_id, timeout=10))["exists"] is True
        assert service.handoff.handed == 0 and service.handoff.missed >= 1


async def test_notices_of_offered_jobs_are_told_apart(bare: Container) -> None:
    handoff = bare.handoff
    assert handoff is not None
    async with local_worker(bare, Runs()):
        assert handoff.expect(1) and handoff.expect(2)
        handoff.forget([2])  # rolled back
        assert handoff.heard(1) and not handoff.heard(1) and not handoff.heard(2) and not handoff.heard("1")
        with inside_job():
            assert not handoff.expect(3)
    assert not handoff.expect(4)  # no worker
