"""Saga jobs deferred in this process, handed straight to this process's worker.

A request that accepts a change commits its events with the saga's job (the unit of work's rule); the
job queue then NOTIFYs every worker, one of them fetches the job (``procrastinate_fetch_job_v2``: the
first ready job of any lock, marked running in its own transaction) and runs it. When the process that
committed the job runs a worker itself, that round is not needed: right after the commit,
:class:`LocalHandoff` marks the job running under the local worker with one statement that asks what
the fetch asks (still waiting, due, the first of its lock, no job of its lock running), and gives it to
the worker as if fetched. Whichever of the claim and another worker's fetch comes first takes the job;
the other finds it running. So the queue's guarantees stay the queue's: a job runs in one worker at a
time, and no two jobs of one table (one lock) run at once.

The job runs inside procrastinate's worker (its concurrency slots, its end of job, its retries, its wait
for running jobs when it stops); :class:`ClaimingWorker` tells when that worker takes jobs. It relies on
procrastinate's ``Worker`` internals (3.10's; tests/integration/test_handoff.py runs the hand-off through
the real worker, so an upgrade that changes them fails there).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import procrastinate.job_context
import procrastinate.jobs
import procrastinate.worker
import psycopg.errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.sql import queries

log = logging.getLogger(__name__)

Q = queries("jobs")

# The jobs to be offered kept waiting for their queue notice, at most.
_EXPECTED_AT_MOST = 1000

# Set while a saga job runs: what it defers (the fallback job of the change it goes on with, under the
# lock of the job it holds) is not handed over; it could not be claimed anyway.
_INSIDE_JOB: contextvars.ContextVar[bool] = contextvars.ContextVar("schemasaga_inside_job", default=False)


@contextmanager
def inside_job() -> Iterator[None]:
    token = _INSIDE_JOB.set(True)
    try:
        yield
    finally:
        _INSIDE_JOB.reset(token)


class ClaimingWorker(procrastinate.worker.Worker):
    """procrastinate's worker, saying when jobs may be handed to it: from the start of its run loop
    (once its slots and its table of running jobs are new) until the start of its shutdown, which waits
    for every job registered before. The queue's notice of a job this process hands over does not
    start a fetch round (it would find nothing); when the hand-over does not take the job, it starts
    that round itself."""

    taking = False
    handoff: LocalHandoff | None = None

    async def _handle_notification(self, *, channel: str, notification: Any) -> None:
        if (
            notification.get("type") == "job_inserted"
            and self.handoff is not None
            and self.handoff.heard(notification.get("job_id"))
        ):
            return
        await super()._handle_notification(channel=channel, notification=notification)

    def fetch_soon(self) -> None:
        """Have the fetch loop look for ready jobs (a job the hand-over did not take)."""
        self._new_job_event.set()

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        tasks: list[asyncio.Task[Any]] = super()._start_side_tasks()
        self.taking = True
        return tasks

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        self.taking = False
        await super()._shutdown(side_tasks)

    def can_take(self) -> bool:
        return self.taking and self.worker_id is not None and not self._stop_event.is_set()


class LocalHandoff:
    """Hands the saga jobs this process defers to this process's worker (when it runs one)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._worker: ClaimingWorker | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The jobs to be offered whose queue notice has not come yet (a bounded memory: a notice lost
        # with the LISTEN connection leaves its job here until pushed out).
        self._expected: dict[int, None] = {}
        # How many jobs were handed over, and how many offers found the job taken or not ready.
        self.handed = 0
        self.missed = 0

    def attach(self, worker: ClaimingWorker) -> None:
        self._worker = worker
        self._expected.clear()
        worker.handoff = self

    def detach(self, worker: ClaimingWorker) -> None:
        if self._worker is worker:
            self._worker = None
            self._expected.clear()
        worker.handoff = None

    def expect(self, job_id: int) -> bool:
        """Called as a saga job ready now is deferred, before its commit: whether it will be offered
        (its queue notice then starts no fetch round here)."""
        if self._worker is None or _INSIDE_JOB.get():
            return False
        self._expected[job_id] = None
        if len(self._expected) > _EXPECTED_AT_MOST:
            del self._expected[next(iter(self._expected))]
        return True

    def forget(self, job_ids: Sequence[int]) -> None:
        """The transaction that deferred ``job_ids`` rolled back: no notice will come."""
        for job_id in job_ids:
            self._expected.pop(job_id, None)

    def heard(self, job_id: object) -> bool:
        """The queue's notice of ``job_id``: True when the job is offered here (no fetch for it)."""
        if not isinstance(job_id, int) or job_id not in self._expected:
            return False
        del self._expected[job_id]
        return True

    def offer(self, job_ids: Sequence[int]) -> None:
        """Called once the transaction that deferred ``job_ids`` (saga jobs, ready now, each
        :meth:`expect`-ed) committed."""
        worker = self._worker
        if worker is None or _INSIDE_JOB.get():
            return
        for job_id in job_ids:
            # In a context of its own: the job must not run in the request's (its log context, its
            # Idempotency-Key claim, its trace).
            task = asyncio.create_task(
                self._take(worker, job_id), name=f"hand over job {job_id}", context=contextvars.Context()
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _take(self, worker: ClaimingWorker, job_id: int) -> None:
        slots = worker._job_semaphore
        if not worker.can_take() or slots.locked():
            worker.fetch_soon()  # the fetch runs it when a slot frees
            return
        await slots.acquire()  # free: no wait (nothing else runs between the test and here)
        started = False
        try:
            worker_id = worker.worker_id
            assert worker_id is not None
            row = await self._claim(job_id, worker_id)
            if row is None:
                self.missed += 1
                return
            if not worker.can_take() or worker.worker_id != worker_id:
                # The worker began to stop while the claim was on its way: the job goes back to the queue.
                await worker.app.job_manager.retry_job_by_id_async(job_id, retry_at=datetime.now(UTC))
                return
            _run(worker, procrastinate.jobs.Job.from_row(row), slots)
            started = True
            self.handed += 1
        except Exception as exc:
            # A job claimed whose answer was lost stays running under this worker without running: the
            # watchdog's lost-job check (JobsInHand) gives it back to the queue.
            log.info("handing job %s to the local worker failed (%s); the queue's fetch runs it", job_id, exc)
        finally:
            if not started:
                slots.release()
                worker.fetch_soon()

    async def _claim(self, job_id: int, worker_id: int) -> dict[str, Any] | None:
        async with self._pool.connection() as conn:
            await conn.set_autocommit(True)
            try:
                async with conn.cursor(row_factory=dict_row) as cur:
                    # Prepared at once on each pool connection (not after psycopg's fifth execution).
                    await cur.execute(
                        Q["claim_job"], {"job_id": job_id, "worker_id": worker_id}, prepare=True
                    )
                    row: dict[str, Any] | None = await cur.fetchone()
                    return row
            except psycopg.errors.UniqueViolation:
                return None  # a job of its lock started meanwhile (the unique index on a running lock)
            finally:
                if not conn.broken:
                    await conn.set_autocommit(False)

    async def close(self) -> None:
        """Wait for the hand-overs in progress (not for the jobs: the worker's stop does that)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _run(worker: ClaimingWorker, job: procrastinate.jobs.Job, slots: asyncio.Semaphore) -> None:
    """Start ``job`` in ``worker`` as its fetch loop starts a fetched job (procrastinate's
    ``Worker._fetch_and_process_jobs``): it then ends, retries and is waited for like any other."""
    job_id = job.id
    context = procrastinate.job_context.JobContext(
        app=worker.app,
        worker_name=worker.worker_name,
        worker_queues=worker.queues,
        additional_context=worker.additional_context.copy() if worker.additional_context else {},
        job=job,
        abort_reason=lambda: worker._job_ids_to_abort.get(job_id) if job_id else None,
        start_timestamp=time.time(),
    )
    task = asyncio.create_task(
        worker._process_job(context),
        name=f"process job {job.task_name}[{job.id}] (handed over)",
    )
    worker._running_jobs[task] = context

    def ended(done: asyncio.Task[Any]) -> None:
        worker._running_jobs.pop(done, None)
        slots.release()

    task.add_done_callback(ended)
