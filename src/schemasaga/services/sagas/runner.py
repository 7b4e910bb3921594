"""Runs the saga of a table's head operation: its steps, retries, compensation and outcome.

Each outcome is committed together with the job of the next waiting change of the same table (the unit
of work's rule), so changes to one table run one at a time in acceptance order, and a crash between any
two steps leaves a job that resumes from the progress recorded in the table's stream. The job that
finished a change goes on with the next one at once (that next job, deferred under the same table lock,
could only start at the next poll); the deferred job is the fallback and finds its work done.

Failures of the core database are not the saga's: they leave this module, the job queue runs the job
again, and the saga resumes from its recorded progress. Only what a step does on the user's database is
classified here, as a transient failure (retried with backoff) or a permanent one (compensated, rejected).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from uuid import UUID

from schemasaga import logcontext, tracing
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, TransientByodbError, classify
from schemasaga.domain.columns import TableSchema
from schemasaga.domain.errors import DomainError, TableNotFound
from schemasaga.domain.events import (
    TableChangeConfirmed,
    TableChangeRejected,
    TableCreationConfirmed,
    TableCreationRejected,
    TableDeletionConfirmed,
    TableDeletionRejected,
    TableSchemaAdopted,
)
from schemasaga.domain.schema import Expression
from schemasaga.domain.table import OperationKind, PendingOperation, Table
from schemasaga.faults import kill_point
from schemasaga.services.ports import Connections, NoSagaMetrics, SagaMetrics, SchemaAdapter
from schemasaga.services.sagas.steps import ALTER_STEPS, SAGAS, Action, Step
from schemasaga.services.unit_of_work import Session, UnitOfWork

log = logging.getLogger(__name__)

T = TypeVar("T")

# A job runs the changes queued behind its own at most this many times before leaving them to their
# own jobs, so one busy table cannot hold a worker slot forever.
MAX_CHAINED_OPERATIONS = 50


# Kinds that run while the table does not exist: its creation, and what acts on its trash table.
_WITHOUT_TABLE = frozenset(
    {OperationKind.CREATE_TABLE, OperationKind.RESTORE_TABLE, OperationKind.PURGE_TRASH}
)


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
        uow: UnitOfWork,
        connections: Connections,
        retry: RetryPolicy,
        metrics: SagaMetrics | None = None,
    ) -> None:
        self.uow = uow
        self.connections = connections
        self.retry = retry
        self.metrics: SagaMetrics = metrics or NoSagaMetrics()
        # When this process started each operation it is running (for the saga's duration).
        self._started: dict[UUID, float] = {}

    async def run(self, *, table_id: UUID, operation_id: UUID, job_id: int | None = None) -> None:
        """Run the saga of ``operation_id``, then the sagas of the table's changes queued behind it,
        while each reaches its outcome. The job deferred with each outcome stays the durable fallback:
        it finds its operation finished and returns.

        A change run that way may fail and defer its retry with a backoff, while its fallback job
        still waits: that job (``job_id``) then finds the retry scheduled and leaves the operation to
        it, rather than trying at once and starting a second chain of retries."""
        try:
            # The load and the first start on one connection; a change chained after it starts alone.
            table, starts = await self.uow.load_and_start(table_id, operation_id, job_id=job_id)
        except TableNotFound:
            log.error("job for unknown table %s ignored", table_id)
            return
        for chained in range(MAX_CHAINED_OPERATIONS):
            op = table.head
            if op is None or op.operation_id != operation_id:
                log.info("operation %s of table %s already finished; nothing to do", operation_id, table_id)
                return
            logcontext.bind_operation(operation_id)
            if chained:
                starts = await self.uow.start_operation(operation_id, job_id=job_id)
            if starts is None:
                log.info("operation %s waits for its scheduled retry; job %s leaves it", operation_id, job_id)
                return
            job_id = None  # the changes chained after it are this job's own
            self._started[operation_id] = time.perf_counter()
            try:
                finished = await self._run(table, op, first_start=starts == 1)
            except _Stale:
                log.info("operation %s was finished by another run", operation_id)
                return
            finally:
                self._started.pop(operation_id, None)
            if finished is None or finished.head is None:
                return
            table, operation_id = finished, finished.head.operation_id

    async def _run(self, table: Table, op: PendingOperation, *, first_start: bool) -> Table | None:
        """The table after the operation's outcome, or None when it waits for a retry.

        ``first_start``: no worker started the operation before, so nothing on the user's database
        can be its doing yet."""
        steps = SAGAS[op.kind]
        if op.compensating:
            return await self._compensate_and_reject(
                table, op, reason=op.compensation_reason or "compensating"
            )
        if op.kind not in _WITHOUT_TABLE and not table.exists:
            return await self._update(
                table,
                op,
                lambda t: t.reject(op.operation_id, reason="the table does not exist in its database"),
            )
        try:
            table.premise(op)
        except DomainError as exc:
            reason = f"a change accepted before it was rejected, and it no longer fits the table: {exc}"
            return await self._update(table, op, lambda t: t.reject(op.operation_id, reason=reason))
        try:
            adapter = await self._adapter(table)
            # The plan is checked before the first step, in the same call to the database's threads.
            check_plan = op.plan is not None and not op.steps_done
            if op.kind is OperationKind.ADOPT:
                if check_plan:
                    await _on_byodb(adapter, _check_plan, adapter, table, op)
                live = await _on_byodb(adapter, _live_schema, adapter, table)
                return await self._update(table, op, _adopt(op.operation_id, live))
            for group in _groups([s for s in steps if s.name not in op.steps_done]):
                group_started = time.perf_counter()
                actions: list[tuple[str, Action]] = []
                for step in group:
                    action = step.action
                    if first_start and step.first_action is not None:
                        # A table there before the first run is the user's, however it looks: never taken
                        # over (found done) nor, on a rejection, dropped by the compensation.
                        action = step.first_action
                    if check_plan:
                        action, check_plan = _checked(action), False
                    actions.append((step.name, action))
                done: list[str] = []
                try:
                    await _on_byodb(adapter, _run_steps, actions, done, adapter, table, op)
                except ByodbError as error:
                    if done:  # what ran before the failure is recorded first: the compensation undoes it
                        table = await self._update(table, op, _complete(op.operation_id, done))
                        op = _head(table, op.operation_id)
                    return await self._failed(table, op, error)
                last = group[-1] is steps[-1]
                table = await self._update(table, op, _complete(op.operation_id, done, confirm=last))
                seconds = time.perf_counter() - group_started
                for name in done:
                    self.metrics.step_finished(
                        kind=op.kind.value, engine=self._engine(table), step=name, seconds=seconds
                    )
                op = _head(table, op.operation_id) if not last else op
                for name in done:
                    kill_point(name, "after_record")
            return table
        except ByodbError as error:
            return await self._failed(table, op, error)

    async def _adapter(self, table: Table) -> SchemaAdapter:
        try:
            adapter = self.connections.open_adapter(table.database)
            if adapter is None:  # opening one may reload the registry, which blocks
                adapter = await asyncio.to_thread(self.connections.adapter, table.database)
            return adapter
        except Exception as exc:  # unknown database, undecryptable URL: the change cannot run
            raise classify(exc) from exc

    async def _failed(self, table: Table, op: PendingOperation, error: ByodbError) -> Table | None:
        attempts = op.failed_attempts + 1
        blocked_by = await self._blockers(table, error)
        if isinstance(error, TransientByodbError) and attempts < self.retry.max_attempts:
            delay = self.retry.delay(attempts)
            log.warning(
                "operation %s attempt %d failed (%s); retrying in %.1fs",
                op.operation_id,
                attempts,
                error,
                delay,
            )
            await self._retry_later(table, op, error=str(error), delay=delay, blocked_by=blocked_by)
            self.metrics.retried(kind=op.kind.value, engine=self._engine(table), error=error)
            return None
        reason = (
            f"gave up after {attempts} attempts: {error}"
            if isinstance(error, TransientByodbError)
            else str(error)
        )
        if blocked_by:
            reason += "; blocked by " + "; ".join(
                f"session {b['session']} ({b['held_for_s']}s): {b['query']}" for b in blocked_by
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
                adapter = await self._adapter(table)
                for name, compensation in undo:
                    kill_point(name, "before_compensation")
                    await _on_byodb(adapter, compensation, adapter, table, op)
                    kill_point(name, "after_compensation")
            except ByodbError as error:
                if isinstance(error, TransientByodbError):
                    # Compensation is retried like any step; the operation stays compensating.
                    delay = self.retry.delay(op.failed_attempts + 1)
                    await self._retry_later(table, op, error=f"compensation: {error}", delay=delay)
                    self.metrics.retried(kind=op.kind.value, engine=self._engine(table), error=error)
                    return None
                reason = f"{reason}; compensation failed: {error}"
        return await self._update(table, op, lambda t: t.reject(op.operation_id, reason=reason))

    # -- recording progress: each in one unit of work ---------------------------------------------

    async def _update(
        self,
        table: Table,
        op: PendingOperation,
        change: Callable[[Table], None],
        *,
        retry_in: float | None = None,
    ) -> Table:
        """Record ``change`` to the running operation (``retry_in``: and run it again that much later)."""
        operation_id = op.operation_id
        outcome: list[str] = []

        async def record(session: Session) -> Table:
            current = await session.table(table.table_id, loaded=table, check_at_save=True)
            _head(current, operation_id)
            change(current)
            outcome[:] = _outcomes(current, operation_id)
            if retry_in is not None:
                session.retry_later(current, operation_id, delay=retry_in)
            return current

        metadata = {"correlation_id": str(operation_id), "actor": "worker"}
        updated = await self.uow.run(record, metadata=metadata)
        if outcome:
            log.info("operation %s (%s, table %s) %s", operation_id, op.kind, table.table_id, outcome[0])
            started = self._started.get(operation_id)
            self.metrics.saga_finished(
                kind=op.kind.value,
                engine=self._engine(updated),
                outcome=outcome[0],
                seconds=time.perf_counter() - started if started is not None else 0.0,
            )
        return updated

    def _engine(self, table: Table) -> str:
        return self.connections.known_engine(table.database) or "unknown"

    async def _retry_later(
        self,
        table: Table,
        op: PendingOperation,
        *,
        error: str,
        delay: float,
        blocked_by: list[dict[str, Any]] | None = None,
    ) -> None:
        def failed(t: Table) -> None:
            t.fail_attempt(op.operation_id, error=error, transient=True, blocked_by=blocked_by)

        await self._update(table, op, failed, retry_in=delay)

    async def _blockers(self, table: Table, error: ByodbError) -> list[dict[str, Any]]:
        """Who held the table when a step timed out waiting for its lock (best effort: nothing when that
        cannot be read)."""
        if not error.lock_timeout:
            return []
        try:
            adapter = await self._adapter(table)
            return await _on_byodb(adapter, adapter.blockers, table.physical_name)
        except ByodbError as exc:
            log.info("could not tell who holds table %r: %s", table.physical_name, exc)
            return []


async def _on_byodb(adapter: SchemaAdapter, action: Callable[..., T], *args: object) -> T:
    """Run a blocking step on the user's database, in that database's own threads (one that does not
    answer delays no other); whatever it raises is classified as a transient or permanent
    :class:`ByodbError` (a bug in a step is permanent: the change is rejected with its message rather
    than retried)."""
    try:
        return await adapter.run(action, *args)
    except ByodbError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def _live_schema(adapter: SchemaAdapter, table: Table) -> TableSchema:
    """The live table's columns, to adopt as metadata."""
    live = adapter.inspect_table(table.physical_name)
    if live is None:
        raise PermanentByodbError(
            f"table {table.physical_name!r} is missing from its database; use the 'repair' strategy"
        )
    unknown = [f"{c.name} ({c.raw_type})" for c in live.columns if c.type is None]
    if unknown:
        raise PermanentByodbError(f"cannot adopt columns of types schemasaga does not manage: {unknown}")
    computed = [f"{c.name} (DEFAULT {c.default})" for c in live.columns if isinstance(c.default, Expression)]
    if computed:
        raise PermanentByodbError(
            f"cannot adopt columns whose default is an expression, not a literal: {computed}"
        )
    try:
        return replace(live.to_schema(), name=table.physical_name)
    except ValueError as exc:
        raise PermanentByodbError(f"cannot adopt table {live.name!r}: {exc}") from None


def _groups(steps: list[Step]) -> list[list[Step]]:
    """The steps to run, each with the verifications that follow it (``Step.check``): one call to the
    database's threads and one recorded completion per group."""
    groups: list[list[Step]] = []
    for step in steps:
        if step.check and groups:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def _run_steps(
    actions: list[tuple[str, Action]],
    done: list[str],
    adapter: SchemaAdapter,
    table: Table,
    op: PendingOperation,
) -> None:
    """Run a group's actions in order (in the database's thread); ``done`` gets each one's name as it
    finishes, so that a failure half-way knows what ran."""
    for name, action in actions:
        kill_point(name, "before_action")
        with tracing.tracer().start_as_current_span(f"saga step {name}"):
            action(adapter, table, op)
        kill_point(name, "after_action")
        done.append(name)


def _checked(action: Action) -> Action:
    """``action`` after :func:`_check_plan`, in one call (one hand-over to the database's threads)."""

    def checked_then_run(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
        _check_plan(adapter, table, op)
        action(adapter, table, op)

    return checked_then_run


def _check_plan(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """The saga runs the plan its change was accepted with: refuse to run a plan the table's state no
    longer gives (a change ahead of it was rejected, and this one was planned on the schema it would
    have left)."""
    before = None if op.kind is OperationKind.CREATE_TABLE else table.confirmed
    after = table.premise(op)
    if before is not None and SAGAS[op.kind] is ALTER_STEPS:
        # A plan that names live indexes is written again the same only while the change has not run:
        # once done (the run that did it died before recording it), its step finds it done.
        if adapter.live_state(before, after, op.change) not in ("before", "middle"):
            return
    fresh = adapter.plan_change(before, after, op.change)
    if op.plan is not None and fresh.statements != op.plan.statements:
        planned = "; ".join(s.sql for s in op.plan.statements)
        now = "; ".join(s.sql for s in fresh.statements)
        raise PermanentByodbError(
            f"the change was planned as [{planned}], but the table's state now calls for [{now}] "
            "(a change accepted before it was rejected): plan it again"
        )


_COMPLETED = (TableCreationConfirmed, TableChangeConfirmed, TableDeletionConfirmed, TableSchemaAdopted)
_REJECTED = (TableCreationRejected, TableChangeRejected, TableDeletionRejected)


def _outcomes(table: Table, operation_id: UUID) -> list[str]:
    """The outcome of ``operation_id`` among the table's unsaved events: "completed", "rejected", or none."""
    for event in table.changes:
        if event.operation_id == operation_id and isinstance(event, _COMPLETED):
            return ["completed"]
        if event.operation_id == operation_id and isinstance(event, _REJECTED):
            return ["rejected"]
    return []


def _head(table: Table, operation_id: UUID) -> PendingOperation:
    """The running operation, which must still be ``operation_id``."""
    head = table.head
    if head is None or head.operation_id != operation_id:
        raise _Stale(str(operation_id))
    return head


def _complete(operation_id: UUID, steps: list[str], *, confirm: bool = False) -> Callable[[Table], None]:
    def change(table: Table) -> None:
        for step in steps:
            table.complete_step(operation_id, step)
        if confirm:
            table.confirm(operation_id)

    return change


def _adopt(operation_id: UUID, schema: TableSchema) -> Callable[[Table], None]:
    def change(table: Table) -> None:
        table.complete_step(operation_id, "adopt")
        table.adopt(operation_id, schema)

    return change
