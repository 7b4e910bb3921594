"""The worker: procrastinate running saga jobs, kept alive, with the watchdog that keeps jobs moving.

procrastinate's worker returns from ``run()`` when it is asked to stop, and also when one of its side
tasks fails (the heartbeat or the LISTEN connection meeting a core database restart: it then stops
itself). The second must never leave a process that answers ``/healthz`` but runs no job: a stop this
module did not ask for starts the worker again, and a failure it cannot recover from ends
:func:`run_worker` with an exception, which takes ``serve`` down with a non-zero status.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import procrastinate
import procrastinate.exceptions
import procrastinate.worker
import psycopg

from schemasaga.config import Settings
from schemasaga.jobs.handoff import ClaimingWorker, LocalHandoff
from schemasaga.jobs.watchdog import (
    JobsInHand,
    keep_heartbeat,
    keep_queue_statistics,
    release_lost_jobs,
    stalled_job_watchdog,
)
from schemasaga.observability import metrics
from schemasaga.services.drift import DriftDetector, periodic_scan
from schemasaga.services.sagas.runner import SagaRunner
from schemasaga.services.trash import TrashCommands, periodic_purge
from schemasaga.services.unit_of_work import Session, UnitOfWork
from schemasaga.services.views import ReadModels
from schemasaga.services.webhooks import WebhookDeliverer, WebhookDispatcher

log = logging.getLogger(__name__)

# A worker that stops on its own is started again after this long, doubled each time up to the cap.
_RESTART_DELAY = 0.5
_RESTART_DELAY_CAP = 5.0


class WorkerLiveness:
    """When this process's worker last showed it is alive (its heartbeat sent while a procrastinate
    worker is registered), for ``/readyz``; none once it stopped."""

    def __init__(self) -> None:
        self._last: float | None = None

    def beat(self) -> None:
        self._last = time.monotonic()

    def stopped(self) -> None:
        self._last = None

    def age(self) -> float | None:
        """Seconds since the last beat; None when the worker never beat or stopped."""
        return None if self._last is None else time.monotonic() - self._last


@dataclass(frozen=True, slots=True)
class WorkerParts:
    """What a worker process runs with (built by bootstrap)."""

    settings: Settings
    jobs: procrastinate.App
    runner: SagaRunner
    uow: UnitOfWork
    reads: ReadModels
    drift: DriftDetector
    trash: TrashCommands
    webhook_deliverer: WebhookDeliverer
    webhook_dispatcher: WebhookDispatcher
    liveness: WorkerLiveness = field(default_factory=WorkerLiveness)
    # The saga jobs this process defers, handed to this worker without the queue's fetch round.
    handoff: LocalHandoff | None = None


class _Stop:
    """Whether this process asked the worker to stop (a signal, or its end being awaited)."""

    def __init__(self) -> None:
        self._requested = False
        self.worker: procrastinate.worker.Worker | None = None

    def asked(self) -> bool:
        return self._requested

    def __call__(self) -> None:
        self._requested = True
        if self.worker is not None:
            self.worker.stop()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated


async def run_worker(parts: WorkerParts, *, concurrency: int, stop_on_signals: bool) -> None:
    """Run saga jobs until cancelled or (``stop_on_signals``) sent SIGINT or SIGTERM; the jobs in hand
    are finished first."""
    s = parts.settings
    hand = JobsInHand()
    stop = _Stop()

    async def also() -> None:
        await keep_heartbeat(parts.jobs, hand)
        if hand.worker_id() is not None:
            parts.liveness.beat()
        metrics.jobs_recovered("lost", len(await release_lost_jobs(parts.jobs, hand)))
        await requeue_orphans(parts.uow, parts.reads)

    background = [
        asyncio.create_task(
            stalled_job_watchdog(
                parts.jobs,
                stalled_after=s.stalled_worker_timeout,
                every=max(1.0, s.stalled_worker_timeout / 3),
                also=also,
                recovered=lambda count: metrics.jobs_recovered("stalled_worker", count),
            )
        )
    ]
    if s.queue_analyze_interval > 0:
        background.append(
            asyncio.create_task(keep_queue_statistics(parts.jobs, every=s.queue_analyze_interval))
        )
    # Each event of the log queued as a delivery to each webhook that wants it (services/webhooks.py).
    background.append(asyncio.create_task(parts.webhook_dispatcher.run(every=s.job_polling_interval)))
    if s.drift_scan_interval > 0:
        background.append(asyncio.create_task(periodic_scan(parts.drift, every=s.drift_scan_interval)))
    # Always, even with the trash off now: what an earlier retention kept is purged when it is due.
    background.append(asyncio.create_task(periodic_purge(parts.trash, every=s.trash_purge_interval)))
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if stop_on_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop)
    try:
        await _work_until_stopped(parts, hand, stop, concurrency=concurrency)
    finally:
        parts.liveness.stopped()
        for sig in signals:
            loop.remove_signal_handler(sig)
        parts.webhook_dispatcher.stop()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


async def _work_until_stopped(parts: WorkerParts, hand: JobsInHand, stop: _Stop, *, concurrency: int) -> None:
    """Run the procrastinate worker until this process asks it to stop: when it stops on its own (a side
    task failed) or the core database drops its connections (restart, failover), start it again after
    a capped backoff instead of leaving the process without a worker."""
    delay = _RESTART_DELAY
    while not stop.asked():
        try:
            await _run_procrastinate(parts, hand, stop, concurrency=concurrency)
        except (procrastinate.exceptions.ConnectorException, psycopg.OperationalError) as exc:
            log.warning("worker lost the core database (%s); restarting in %.1fs", exc, delay)
        else:
            if stop.asked():
                return
            log.error("the worker stopped although no stop was asked for; restarting in %.1fs", delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RESTART_DELAY_CAP)


async def _run_procrastinate(parts: WorkerParts, hand: JobsInHand, stop: _Stop, *, concurrency: int) -> None:
    s = parts.settings
    # The worker is built here rather than by ``App.run_worker_async`` so that the lost-job check
    # knows the id it registers under (a new one at each restart).
    worker = ClaimingWorker(
        app=parts.jobs,
        concurrency=concurrency,
        fetch_job_polling_interval=s.job_polling_interval,
        update_heartbeat_interval=s.heartbeat_interval,
        stalled_worker_timeout=s.stalled_worker_timeout,
        additional_context={
            "saga_runner": parts.runner,
            "jobs_in_hand": hand,
            "webhook_deliverer": parts.webhook_deliverer,
        },
        # Signals are this module's (run_worker): it must tell its own stops from the worker's.
        install_signal_handlers=False,
        delete_jobs="successful",
    )
    hand.worker_id = lambda: worker.worker_id
    stop.worker = worker
    if parts.handoff is not None:
        parts.handoff.attach(worker)
    try:
        await worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated
    finally:
        stop.worker = None
        if parts.handoff is not None:
            parts.handoff.detach(worker)


async def requeue_orphans(uow: UnitOfWork, reads: ReadModels) -> int:
    """Defer a job for every table whose unfinished operations have no job left (a job that failed
    for good, for instance): without it, nothing would ever finish them."""
    heads: dict[UUID, UUID] = {}
    for op in await reads.stuck_operations():
        heads.setdefault(op.table_id, op.operation_id)
    for table_id, operation_id in heads.items():
        log.warning("table %s has unfinished operations but no job; deferring one", table_id)
        await uow.run(_requeue(table_id, operation_id), metadata={"actor": "watchdog"})
    return len(heads)


def _requeue(table_id: UUID, operation_id: UUID) -> Callable[[Session], Awaitable[None]]:
    async def requeue(session: Session) -> None:
        session.requeue(table_id, operation_id)

    return requeue
