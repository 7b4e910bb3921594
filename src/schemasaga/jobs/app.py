"""The procrastinate app, its tasks (a saga step, a webhook delivery) and the scheduler that defers them
inside a caller's transaction."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import procrastinate
import procrastinate.exceptions
import psycopg
from opentelemetry import trace
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schemasaga import logcontext, tracing
from schemasaga.jobs.handoff import inside_job
from schemasaga.jobs.queries import DELIVER_WEBHOOK, RUN_SAGA, table_lock, webhook_lock
from schemasaga.jobs.watchdog import JobsInHand

log = logging.getLogger(__name__)

__all__ = [
    "DELIVER_WEBHOOK",
    "RUN_SAGA",
    "JobScheduler",
    "SagaRunnerPort",
    "WebhookDelivererPort",
    "create_app",
]


class SagaRunnerPort(Protocol):
    async def run(self, *, table_id: UUID, operation_id: UUID, job_id: int | None = None) -> None: ...


class WebhookDelivererPort(Protocol):
    async def deliver(self, webhook_id: UUID, position: int) -> float | None: ...


class RetryLater(Exception):
    """A delivery that failed and is to be tried again in ``seconds``."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds = seconds


_CORE_LOST = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    procrastinate.exceptions.ConnectorException,
)


class _WebhookRetry(procrastinate.BaseRetryStrategy):
    """Again when the deliverer says when (its schedule), or soon when the core database was lost."""

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if isinstance(exception, RetryLater):
            # retry_at: retry_in takes whole seconds, and a test's schedule is shorter.
            return procrastinate.RetryDecision(
                retry_at=datetime.now(UTC) + timedelta(seconds=exception.seconds)
            )
        if isinstance(exception, _CORE_LOST) and job.attempts < 20:
            return procrastinate.RetryDecision(retry_in={"seconds": 1})
        return None


@contextlib.asynccontextmanager
async def _autocommit_connection(pool: AsyncConnectionPool[Any]) -> AsyncIterator[AsyncConnection[Any]]:
    """A pool connection in autocommit mode, given back in transaction mode (one left busy or broken is
    closed by the pool). ``coredb.pool.autocommit_connection`` does the same above this layer: ``jobs``
    sits below ``coredb`` and may not import it (tests/unit/test_layers.py)."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            if conn.info.transaction_status == TransactionStatus.IDLE:
                await conn.set_autocommit(False)


class _AutocommitConnector(procrastinate.PsycopgConnector):
    """procrastinate's psycopg connector, its own queries run in autocommit mode on the shared pool.

    Each of them is one statement (a call to one of its functions: fetch, finish, retry, heartbeat...),
    or a script sent at once, which PostgreSQL runs as one transaction: in autocommit it is committed as
    it runs, as the pool's transaction would commit it at the end of the block, without the BEGIN and
    COMMIT round trips around it (a finished job: one round trip instead of three). A query given the
    caller's connection (a job deferred in a unit of work) runs in the caller's transaction, as before.
    It overrides ``_get_cursor`` (procrastinate 3.x's): the integration tests run every job through it."""

    @contextlib.asynccontextmanager
    async def _get_cursor(
        self, connection: psycopg.AsyncConnection[Any] | None = None
    ) -> AsyncIterator[psycopg.AsyncCursor[DictRow]]:
        if connection is not None:
            async with super()._get_cursor(connection) as cursor:
                yield cursor
            return
        async with _autocommit_connection(self.pool) as conn, super()._get_cursor(conn) as cursor:
            yield cursor


def create_app() -> procrastinate.App:
    """A procrastinate app with no pool of its own: bootstrap opens it on the shared core pool."""
    app = procrastinate.App(connector=_AutocommitConnector())

    # A job that loses the core database mid-step (restart, failover) is run again: every step is
    # idempotent and its progress is in the events, so a re-run resumes where it stopped.
    core_lost = procrastinate.RetryStrategy(
        max_attempts=20,
        wait=1,
        retry_exceptions=set(_CORE_LOST),
    )

    @app.task(name=RUN_SAGA, pass_context=True, retry=core_lost)
    async def run_saga(
        context: procrastinate.JobContext, table_id: str, operation_id: str, traceparent: str | None = None
    ) -> None:
        """``traceparent``: the trace of what deferred the job (when tracing is on), continued here."""
        runner: SagaRunnerPort = context.additional_context["saga_runner"]
        hand: JobsInHand | None = context.additional_context.get("jobs_in_hand")
        assert context.job.id is not None
        logcontext.bind_operation(operation_id)
        with (
            tracing.continued({"traceparent": traceparent} if traceparent else None),
            tracing.tracer().start_as_current_span(
                "saga job",
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "schemasaga.job_id": context.job.id,
                    "schemasaga.table_id": table_id,
                    "schemasaga.operation_id": operation_id,
                    "schemasaga.correlation_id": operation_id,
                },
            ),
            hand.holding(context.job.id) if hand is not None else _nothing(),
            inside_job(),
        ):
            try:
                await runner.run(
                    table_id=UUID(table_id), operation_id=UUID(operation_id), job_id=context.job.id
                )
            finally:
                # The runner binds each change it runs after this job's own (the table's queue); the
                # worker's "job ended" line is this job's.
                logcontext.bind_operation(operation_id)

    @app.task(name=DELIVER_WEBHOOK, pass_context=True, retry=_WebhookRetry())
    async def deliver_webhook(context: procrastinate.JobContext, webhook_id: str, position: int) -> None:
        deliverer: WebhookDelivererPort = context.additional_context["webhook_deliverer"]
        wait = await deliverer.deliver(UUID(webhook_id), position)
        if wait is not None:
            raise RetryLater(wait, f"delivery of position {position} to webhook {webhook_id} failed")

    return app


class JobScheduler:
    """Defers saga jobs on the caller's connection, so the job commits with the events or not at all."""

    def __init__(self, app: procrastinate.App) -> None:
        self.app = app

    async def run_saga(
        self, *, conn: AsyncConnection[Any], table_id: UUID, operation_id: UUID, delay: float = 0.0
    ) -> int:
        options: dict[str, Any] = {
            "connection": conn,
            # Jobs of one table never run at the same time: no job starts while another with its
            # lock is `doing`. A job retried as stalled is `todo` again and frees the lock, which is
            # why a live worker must never look stalled (keep_heartbeat).
            "lock": table_lock(table_id),
        }
        if delay > 0:
            options["schedule_in"] = {"seconds": delay}
        args = {"table_id": str(table_id), "operation_id": str(operation_id)}
        if (parent := tracing.traceparent()) is not None:  # only while tracing is on
            args["traceparent"] = parent
        job_id: int = await self.app.configure_task(RUN_SAGA, **options).defer_async(**args)
        return job_id

    async def deliver_webhook(
        self, *, conn: AsyncConnection[Any], webhook_id: UUID, position: int, stream: str | None
    ) -> None:
        """Queue one delivery, on the caller's connection (with its row)."""
        task = self.app.configure_task(
            DELIVER_WEBHOOK, connection=conn, lock=webhook_lock(webhook_id, stream)
        )
        await task.defer_async(webhook_id=str(webhook_id), position=position)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
