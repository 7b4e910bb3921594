"""Keeping jobs moving when workers die or lose the core database: heartbeats, stalled and lost jobs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import procrastinate

from schemasaga.jobs import queries

log = logging.getLogger(__name__)


class JobsInHand:
    """The saga jobs one worker process is running, to give back the jobs it holds without running.

    The queue marks a job ``doing`` under a worker when the worker fetches it, and changes that when
    the worker reports the job's end. When the core connection dies with the fetch's answer or the
    report in flight, the job stays ``doing`` under a worker that is alive and sends heartbeats, so
    the stalled-worker check never frees it and its table's changes wait forever. Only the worker
    knows which jobs it really runs: a job the queue gives it that it has not been running for two
    checks in a row is lost, and goes back to ``todo``. (One check is not enough: a job fetched a
    moment ago may be in the queue before its answer reaches the worker.)
    """

    def __init__(self) -> None:
        self.worker_id: Callable[[], int | None] = lambda: None
        self._running: set[int] = set()
        self._suspects: set[int] = set()

    @contextmanager
    def holding(self, job_id: int) -> Iterator[None]:
        self._running.add(job_id)
        try:
            yield
        finally:
            self._running.discard(job_id)

    def lost(self, held: Iterable[int]) -> list[int]:
        """Of the jobs the queue says this worker holds, those it was not running at this check nor
        at the previous one."""
        idle = set(held) - self._running
        lost = idle & self._suspects
        self._suspects = idle - lost
        return sorted(lost)


async def keep_heartbeat(app: procrastinate.App, hand: JobsInHand) -> None:
    """Send this worker's heartbeat. procrastinate's own heartbeat task ends for good at its first
    error (a dropped core connection) and nothing restarts it, while the worker goes on running jobs:
    after the stalled-worker timeout, other workers would take its running jobs for stalled and run
    them a second time, beside the first. The watchdog, which survives errors, sends it as well."""
    worker_id = hand.worker_id()
    if worker_id is not None:
        await app.job_manager.update_heartbeat(worker_id)


async def release_lost_jobs(app: procrastinate.App, hand: JobsInHand) -> list[int]:
    """Put back to ``todo`` the jobs the queue says this worker holds but it does not run."""
    worker_id = hand.worker_id()
    if worker_id is None:
        return []
    lost = hand.lost(await queries.held_jobs(app, worker_id=worker_id))
    for job_id in lost:
        log.warning("retrying job %s: the queue gives it to this worker, which is not running it", job_id)
        await app.job_manager.retry_job_by_id_async(job_id, retry_at=datetime.now(UTC))
    return lost


async def retry_stalled_jobs(app: procrastinate.App, *, stalled_after: float) -> int:
    """Put back to ``todo`` the jobs of workers that stopped sending heartbeats (killed, frozen)."""
    stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after))
    for job in stalled:
        log.warning("retrying job %s (%s): its worker stopped sending heartbeats", job.id, job.task_name)
        await app.job_manager.retry_job(job)
    if stalled:
        await app.job_manager.prune_stalled_workers(seconds_since_heartbeat=stalled_after)
    return len(stalled)


async def stalled_job_watchdog(
    app: procrastinate.App,
    *,
    stalled_after: float,
    every: float,
    also: Callable[[], Awaitable[object]] | None = None,
    recovered: Callable[[int], None] | None = None,
) -> None:
    """Runs in every worker process until cancelled; ``also`` runs at each round too, ``recovered`` is
    told how many stalled jobs each round put back."""
    while True:
        try:
            count = await retry_stalled_jobs(app, stalled_after=stalled_after)
            if recovered is not None:
                recovered(count)
            if also is not None:
                await also()
        except Exception:  # the core database may be restarting: try again next round
            _unless_cancelled()
            log.exception("stalled-job check failed")
        _unless_cancelled()
        await asyncio.sleep(every)


# The statistics are stale when the table holds this many jobs more (or fewer) than they say, plus this
# share of what they say: a burst from an empty queue crosses it within its first hundred jobs.
_STALE_AFTER_ROWS = 100
_STALE_AFTER_SHARE = 0.5


def queue_statistics_stale(rows: int, analyzed_rows: int) -> bool:
    """Whether the planner's picture of the job table (``analyzed_rows``) is too far from its size."""
    return abs(rows - analyzed_rows) > _STALE_AFTER_ROWS + _STALE_AFTER_SHARE * analyzed_rows


async def refresh_queue_statistics(app: procrastinate.App) -> bool:
    """ANALYZE the job table when its size has moved far from what its statistics say; True when it did.

    procrastinate's job-fetch query (``procrastinate_fetch_job_v2``) checks every ready job against the
    others of its lock. Planned on statistics from a nearly empty table (or none), it sorts every ready
    job and probes each one's lock before taking the first: hundreds of milliseconds per fetch once a
    burst has queued a few thousand jobs, so the worker starts about one job at a time. Autovacuum would
    fix the statistics only at its next round on the database (a minute by default), or never where it
    is off; this check does it within a second of the burst.
    """
    rows, analyzed_rows = await queries.queue_size_against_statistics(app)
    if not queue_statistics_stale(rows, analyzed_rows):
        return False
    await queries.analyze_queue(app)
    log.debug("analyzed procrastinate_jobs: %s jobs, statistics said %s", rows, analyzed_rows)
    return True


async def keep_queue_statistics(app: procrastinate.App, *, every: float) -> None:
    """Runs in every worker process until cancelled: :func:`refresh_queue_statistics` every ``every`` s."""
    while True:
        try:
            await refresh_queue_statistics(app)
        except Exception:  # the core database may be restarting: try again next round
            _unless_cancelled()
            log.exception("job-queue statistics check failed")
        _unless_cancelled()
        await asyncio.sleep(every)


def _unless_cancelled() -> None:
    """Re-raise the cancellation of the current task when a query swallowed it or turned it into another
    exception (psycopg's pool and procrastinate's connector may, when cancelled mid-query): a loop that
    went on to its next round would run forever, and the worker's shutdown, which waits for it, with it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
