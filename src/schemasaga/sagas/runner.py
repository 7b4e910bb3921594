"""Runs the saga of a table's head operation: its steps, retries, compensation and outcome.

Each outcome is committed together with the job of the next waiting change of the same table, so
changes to one table run one at a time in acceptance order, and a crash between any two steps
leaves a job that resumes from the progress recorded in the table's stream. The job that finished a
change goes on with the next one at once (that next job, deferred under the same table lock, could
only start at the next poll); the deferred job is the fallback and finds its work done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from procrastinate.exceptions import ConnectorException
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schemasaga.byodb.adapter import ByodbAdapter
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, TransientByodbError, classify
from schemasaga.catalog import DatabaseCatalog
from schemasaga.domain.columns import Column
from schemasaga.domain.errors import TableNotFound
from schemasaga.domain.table import OperationKind, PendingOperation, Table
from schemasaga.faults import kill_point
from schemasaga.jobs.app import RUN_SAGA, JobScheduler
from schemasaga.projections.tables import mark_running, project
from schemasaga.repository import TableRepository
from schemasaga.sagas.definitions import SAGAS
from schemasaga.services import update_table
from schemasaga.sql import queries

log = logging.getLogger(__name__)
JOB_QUERIES = queries("jobs")

# A job runs the changes queued behind its own at most this many times before leaving them to their
# own jobs, so one busy table cannot hold a worker slot forever.
MAX_CHAINED_OPERATIONS = 50


class RetryPolicy:
    def __init__(self, *, max_attempts: int, base_delay: float, max_delay: float) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the n-th failed attempt (n >= 1)."""
        # The exponent is capped: 2.0 ** 1024 overflows, and compensation retries have no limit.
        return float(min(self.max_delay, self.base_delay * 2.0 ** min(failed_attempts - 1, 64)))


class _Stale(Exception):
    """The job's operation is no longer the table's head: another run finished it."""


class SagaRunner:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[Any],
        repository: TableRepository,
        scheduler: JobScheduler,
        catalog: DatabaseCatalog,
        retry: RetryPolicy,
    ) -> None:
        self.pool = pool
        self.repository = repository
        self.scheduler = scheduler
        self.catalog = catalog
        self.retry = retry

    async def run(self, *, table_id: UUID, operation_id: UUID, job_id: int | None = None) -> None:
        """Run the saga of ``operation_id``, then the sagas of the table's changes queued behind it,
        while each reaches its outcome. The job deferred with each outcome stays the durable fallback:
        it finds its operation finished and returns.

        A change run that way may fail and defer its retry with a backoff, while its fallback job
        still waits: that job (``job_id``) then finds the retry scheduled and leaves the operation to
        it, rather than trying at once and starting a second chain of retries."""
        try:
            table = await self.repository.load(table_id)
        except TableNotFound:
            log.error("job for unknown table %s ignored", table_id)
            return
        for _ in range(MAX_CHAINED_OPERATIONS):
            op = table.head
            if op is None or op.operation_id != operation_id:
                log.info("operation %s of table %s already finished; nothing to do", operation_id, table_id)
                return
            async with self.pool.connection() as conn:
                if job_id is not None and await _retry_scheduled(conn, operation_id, job_id):
                    log.info(
                        "operation %s waits for its scheduled retry; job %s leaves it", operation_id, job_id
                    )
                    return
                job_id = None  # the changes chained after it are this job's own
                await mark_running(conn, operation_id=operation_id)
            try:
                finished = await self._run(table, op)
            except _Stale:
                log.info("operation %s was finished by another run", operation_id)
                return
            if finished is None or finished.head is None:
                return
            table, operation_id = finished, finished.head.operation_id

    async def _run(self, table: Table, op: PendingOperation) -> Table | None:
        """The table after the operation's outcome, or None when it waits for a retry."""
        steps = SAGAS[op.kind]
        if op.compensating:
            return await self._compensate_and_reject(
                table, op, reason=op.compensation_reason or "compensating"
            )
        if op.kind is not OperationKind.CREATE_TABLE and not table.exists:
            return await self._update(
                table,
                op,
                lambda t: t.reject(op.operation_id, reason="the table does not exist in its database"),
            )
        try:
            adapter = await asyncio.to_thread(self.catalog.adapter, table.database)
            if op.kind is OperationKind.ADOPT:
                return await self._adopt(adapter, table, op)
            for index, step in enumerate(steps):
                if step.name in op.steps_done:
                    continue
                kill_point(step.name, "before_action")
                await asyncio.to_thread(step.action, adapter, table, op)
                kill_point(step.name, "after_action")
                if index < len(steps) - 1:
                    table = await self._update(table, op, _complete(op.operation_id, step.name))
                    op = _head(table, op.operation_id)
                    kill_point(step.name, "after_record")
            table = await self._update(table, op, _complete(op.operation_id, steps[-1].name, confirm=True))
            kill_point(steps[-1].name, "after_record")
            return table
        except CORE_ERRORS:
            raise
        except Exception as exc:
            return await self._failed(table, op, _byodb_error(exc))

    async def _adopt(self, adapter: ByodbAdapter, table: Table, op: PendingOperation) -> Table:
        live = await asyncio.to_thread(adapter.inspect_table, table.name)
        if live is None:
            raise PermanentByodbError(
                f"table {table.name!r} is missing from its database; use the 'repair' strategy"
            )
        unknown = [f"{c.name} ({c.raw_type})" for c in live.columns if c.type is None]
        if unknown:
            raise PermanentByodbError(f"cannot adopt columns of types schemasaga does not manage: {unknown}")
        columns = [
            Column(name=c.name, type=c.type, nullable=c.nullable, primary_key=c.primary_key)
            for c in live.columns
            if c.type is not None
        ]

        def adopt(t: Table) -> None:
            t.complete_step(op.operation_id, "adopt")
            t.adopt(op.operation_id, columns)

        return await self._update(table, op, adopt)

    async def _failed(self, table: Table, op: PendingOperation, error: ByodbError) -> Table | None:
        attempts = op.failed_attempts + 1
        if isinstance(error, TransientByodbError) and attempts < self.retry.max_attempts:
            delay = self.retry.delay(attempts)
            log.warning(
                "operation %s attempt %d failed (%s); retrying in %.1fs",
                op.operation_id,
                attempts,
                error,
                delay,
            )
            await self._retry_later(table, op, error=str(error), delay=delay)
            return None
        reason = (
            f"gave up after {attempts} attempts: {error}"
            if isinstance(error, TransientByodbError)
            else str(error)
        )
        log.warning("operation %s failed permanently: %s", op.operation_id, reason)
        return await self._compensate_and_reject(table, op, reason=reason)

    async def _compensate_and_reject(
        self, table: Table, op: PendingOperation, *, reason: str
    ) -> Table | None:
        to_undo = [(s.name, s.compensation) for s in reversed(SAGAS[op.kind]) if s.name in op.steps_done]
        undo = [(name, compensation) for name, compensation in to_undo if compensation is not None]
        if undo:
            table = await self._update(
                table, op, lambda t: t.start_compensation(op.operation_id, reason=reason)
            )
            op = _head(table, op.operation_id)
            try:
                adapter = await asyncio.to_thread(self.catalog.adapter, table.database)
                for name, compensation in undo:
                    kill_point(name, "before_compensation")
                    await asyncio.to_thread(compensation, adapter, table, op)
                    kill_point(name, "after_compensation")
            except CORE_ERRORS:
                raise
            except Exception as exc:
                error = _byodb_error(exc)
                if isinstance(error, TransientByodbError):
                    # Compensation is retried like any step; the operation stays compensating.
                    delay = self.retry.delay(op.failed_attempts + 1)
                    await self._retry_later(table, op, error=f"compensation: {error}", delay=delay)
                    return None
                reason = f"{reason}; compensation failed: {error}"
        return await self._update(table, op, lambda t: t.reject(op.operation_id, reason=reason))

    # -- recording progress (each in one core transaction, retried on concurrent appends) ---------

    async def _update(
        self,
        table: Table,
        op: PendingOperation,
        change: Callable[[Table], None],
        *,
        retry_in: float | None = None,
    ) -> Table:
        """Record ``change`` to the running operation; when it finishes the operation, defer the job
        of the table's next change in the same transaction (``retry_in``: defer this one's retry)."""
        operation_id = op.operation_id

        def decide(t: Table) -> None:
            _head(t, operation_id)
            change(t)

        async def commit(conn: AsyncConnection[Any], t: Table) -> None:
            recorded = await self.repository.save(t, conn=conn, metadata=_meta(operation_id))
            await project(conn, t, recorded)
            if retry_in is not None:
                await self.scheduler.run_saga(
                    conn=conn, table_id=t.table_id, operation_id=operation_id, delay=retry_in
                )
            elif t.operation(operation_id) is None and t.head is not None:
                await self.scheduler.run_saga(
                    conn=conn, table_id=t.table_id, operation_id=t.head.operation_id
                )

        return await update_table(self.pool, self.repository, table.table_id, decide, commit, loaded=table)

    async def _retry_later(self, table: Table, op: PendingOperation, *, error: str, delay: float) -> None:
        await self._update(
            table, op, lambda t: t.fail_attempt(op.operation_id, error=error, transient=True), retry_in=delay
        )


async def _retry_scheduled(conn: AsyncConnection[Any], operation_id: UUID, job_id: int) -> bool:
    """Whether another job of the operation is scheduled for later: a retry waiting for its backoff."""
    cur = await conn.execute(
        JOB_QUERIES["retry_scheduled"],
        {"task_name": RUN_SAGA, "job_id": job_id, "operation_id": str(operation_id)},
    )
    return await cur.fetchone() is not None


# Failures of the core database (or of the job queue in it) are not the saga's: they leave the job,
# which procrastinate retries (jobs/app.py), and the saga resumes from its recorded progress.
CORE_ERRORS = (psycopg.Error, PoolTimeout, ConnectorException, _Stale)


def _byodb_error(exc: Exception) -> ByodbError:
    """What a step's failure means for the saga: the adapter raises classified errors; anything else
    (a bug in a step) is permanent, so the change is rejected with its message rather than retried."""
    return exc if isinstance(exc, ByodbError) else classify(exc)


def _head(table: Table, operation_id: UUID) -> PendingOperation:
    """The running operation, which must still be ``operation_id``."""
    head = table.head
    if head is None or head.operation_id != operation_id:
        raise _Stale(str(operation_id))
    return head


def _complete(operation_id: UUID, step: str, *, confirm: bool = False) -> Callable[[Table], None]:
    def change(table: Table) -> None:
        table.complete_step(operation_id, step)
        if confirm:
            table.confirm(operation_id)

    return change


def _meta(operation_id: UUID) -> dict[str, Any]:
    return {"correlation_id": str(operation_id), "actor": "worker"}
