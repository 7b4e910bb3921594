"""Runs the saga of a table's head operation: its steps, retries, compensation and outcome.

Each outcome is committed together with the job of the next waiting change of the same table, so
changes to one table run one at a time in acceptance order, and a crash between any two steps
leaves a job that resumes from the progress recorded in the table's stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.adapter import ByodbAdapter
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, TransientByodbError, classify
from schemasaga.catalog import DatabaseCatalog
from schemasaga.domain.columns import Column
from schemasaga.domain.errors import TableNotFound
from schemasaga.domain.table import OperationKind, PendingOperation, Table
from schemasaga.faults import kill_point
from schemasaga.jobs.app import JobScheduler
from schemasaga.projections.tables import mark_running, project
from schemasaga.repository import TableRepository
from schemasaga.sagas.definitions import SAGAS, Step
from schemasaga.services import update_table

log = logging.getLogger(__name__)


class RetryPolicy:
    def __init__(self, *, max_attempts: int, base_delay: float, max_delay: float) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the n-th failed attempt (n >= 1)."""
        return float(min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1)))


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

    async def run(self, *, table_id: UUID, operation_id: UUID) -> None:
        try:
            table = await self.repository.load(table_id)
        except TableNotFound:
            log.error("job for unknown table %s ignored", table_id)
            return
        op = table.head
        if op is None or op.operation_id != operation_id:
            log.info("operation %s of table %s already finished; nothing to do", operation_id, table_id)
            return
        async with self.pool.connection() as conn:
            await mark_running(conn, operation_id=operation_id, attempt=op.failed_attempts + 1)
        try:
            await self._run(table, op)
        except _Stale:
            log.info("operation %s was finished by another run", operation_id)

    async def _run(self, table: Table, op: PendingOperation) -> None:
        steps = SAGAS[op.kind]
        if op.compensating:
            await self._compensate_and_reject(table, op, reason=op.compensation_reason or "compensating")
            return
        if op.kind is not OperationKind.CREATE_TABLE and not table.exists:
            reason = "the table does not exist in its database"
            await self._reject(table.table_id, op.operation_id, reason=reason)
            return
        try:
            adapter = await asyncio.to_thread(self.catalog.adapter, table.database)
            if op.kind is OperationKind.ADOPT:
                await self._adopt(adapter, table, op)
                return
            for index, step in enumerate(steps):
                if step.name in op.steps_done:
                    continue
                kill_point(step.name, "before_action")
                await asyncio.to_thread(step.action, adapter, table, op)
                kill_point(step.name, "after_action")
                if index < len(steps) - 1:
                    await self._record(table.table_id, op.operation_id, step=step.name)
                    op.steps_done.append(step.name)
                    kill_point(step.name, "after_record")
            await self._record(table.table_id, op.operation_id, step=steps[-1].name, confirm=True)
            kill_point(steps[-1].name, "after_record")
        except _Stale:
            raise
        except Exception as exc:
            error = exc if isinstance(exc, ByodbError) else classify(exc)
            await self._failed(table, op, error)

    async def _adopt(self, adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
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

        def decide(t: Table) -> None:
            self._ensure_head(t, op.operation_id)
            t.complete_step(op.operation_id, "adopt")
            t.adopt(op.operation_id, columns)

        await update_table(self.pool, self.repository, table.table_id, decide, self._commit(op.operation_id))

    async def _failed(self, table: Table, op: PendingOperation, error: ByodbError) -> None:
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
            await self._record_failure(table.table_id, op.operation_id, error=str(error), delay=delay)
            return
        if isinstance(error, TransientByodbError):
            reason = f"gave up after {attempts} attempts: {error}"
        else:
            reason = str(error)
        log.warning("operation %s failed permanently: %s", op.operation_id, reason)
        await self._compensate_and_reject(table, op, reason=reason)

    async def _compensate_and_reject(self, table: Table, op: PendingOperation, *, reason: str) -> None:
        to_undo = [s for s in reversed(SAGAS[op.kind]) if s.name in op.steps_done and s.compensation]
        if to_undo:
            await self._mark_compensating(table.table_id, op.operation_id, reason=reason)
            try:
                adapter = await asyncio.to_thread(self.catalog.adapter, table.database)
                for step in to_undo:
                    kill_point(step.name, "before_compensation")
                    await asyncio.to_thread(_compensation(step), adapter, table, op)
                    kill_point(step.name, "after_compensation")
            except Exception as exc:
                error = exc if isinstance(exc, ByodbError) else classify(exc)
                if isinstance(error, TransientByodbError):
                    # Compensation is retried like any step; the operation stays compensating.
                    await self._record_failure(
                        table.table_id,
                        op.operation_id,
                        error=f"compensation: {error}",
                        delay=self.retry.delay(op.failed_attempts + 1),
                    )
                    return
                reason = f"{reason}; compensation failed: {error}"
        await self._reject(table.table_id, op.operation_id, reason=reason)

    # -- recording progress (each in one core transaction, retried on concurrent appends) ---------

    async def _record(self, table_id: UUID, operation_id: UUID, *, step: str, confirm: bool = False) -> None:
        def decide(table: Table) -> None:
            self._ensure_head(table, operation_id)
            table.complete_step(operation_id, step)
            if confirm:
                table.confirm(operation_id)

        await update_table(self.pool, self.repository, table_id, decide, self._commit(operation_id))

    async def _record_failure(self, table_id: UUID, operation_id: UUID, *, error: str, delay: float) -> None:
        def decide(table: Table) -> None:
            self._ensure_head(table, operation_id)
            table.fail_attempt(operation_id, error=error, transient=True)

        async def commit(conn: AsyncConnection[Any], table: Table) -> None:
            recorded = await self.repository.save(table, conn=conn, metadata=_meta(operation_id))
            await project(conn, table, recorded)
            await self.scheduler.run_saga(
                conn=conn, table_id=table_id, operation_id=operation_id, delay=delay
            )

        await update_table(self.pool, self.repository, table_id, decide, commit)

    async def _mark_compensating(self, table_id: UUID, operation_id: UUID, *, reason: str) -> None:
        def decide(table: Table) -> None:
            self._ensure_head(table, operation_id)
            table.start_compensation(operation_id, reason=reason)

        await update_table(self.pool, self.repository, table_id, decide, self._commit(operation_id))

    async def _reject(self, table_id: UUID, operation_id: UUID, *, reason: str) -> None:
        def decide(table: Table) -> None:
            self._ensure_head(table, operation_id)
            table.reject(operation_id, reason=reason)

        await update_table(self.pool, self.repository, table_id, decide, self._commit(operation_id))

    def _commit(self, operation_id: UUID) -> Callable[[AsyncConnection[Any], Table], Awaitable[None]]:
        async def commit(conn: AsyncConnection[Any], table: Table) -> None:
            recorded = await self.repository.save(table, conn=conn, metadata=_meta(operation_id))
            await project(conn, table, recorded)
            # When this operation is finished, the next waiting change of the table starts now.
            if table.operation(operation_id) is None and table.head is not None:
                await self.scheduler.run_saga(
                    conn=conn, table_id=table.table_id, operation_id=table.head.operation_id
                )

        return commit

    @staticmethod
    def _ensure_head(table: Table, operation_id: UUID) -> None:
        if table.head is None or table.head.operation_id != operation_id:
            raise _Stale(str(operation_id))


def _compensation(step: Step) -> Any:
    assert step.compensation is not None
    return step.compensation


def _meta(operation_id: UUID) -> dict[str, Any]:
    return {"correlation_id": str(operation_id), "actor": "worker"}
