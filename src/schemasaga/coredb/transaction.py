"""The core database's side of a unit of work: a PostgreSQL transaction on one pool connection, where the
events, the read models and the saga's job are written together or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb import idempotency, readmodels
from schemasaga.coredb.pool import autocommit_connection
from schemasaga.domain.database import DatabaseState
from schemasaga.domain.events import stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import EventStore, NewEvent, RecordedEvent
from schemasaga.jobs import queries as job_queries
from schemasaga.jobs.app import JobScheduler
from schemasaga.jobs.handoff import LocalHandoff
from schemasaga.services.idempotency import Claim


class CommitObserver(Protocol):
    """Told of what each unit of work committed, after the commit (metrics, log context)."""

    def committed(self, events: Sequence[RecordedEvent], databases: Mapping[str, str]) -> None:
        """``events``: every event appended; ``databases``: the database of each table stream written."""


class PgStreams:
    """:class:`~schemasaga.services.ports.StreamReader` on a connection (in the caller's transaction) or,
    with none, each read on a pool connection of its own."""

    def __init__(self, store: EventStore, conn: AsyncConnection[Any] | None = None) -> None:
        self._store = store
        self._conn = conn

    async def read_stream(
        self, stream: str, *, from_version: int = 0, to_version: int | None = None
    ) -> list[RecordedEvent]:
        return await self._store.read_stream(
            stream, from_version=from_version, to_version=to_version, conn=self._conn
        )

    async def load_snapshot(
        self, stream: str, *, max_version: int | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        return await self._store.load_snapshot(stream, max_version=max_version, conn=self._conn)

    async def latest_snapshots(self, streams: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        return await self._store.latest_snapshots(streams, conn=self._conn)

    async def read_streams_from(self, from_versions: Mapping[str, int]) -> list[RecordedEvent]:
        return await self._store.read_streams_from(from_versions, conn=self._conn)


class PgStarting(PgStreams):
    """:class:`~schemasaga.services.ports.OperationStart`: reads and a start on one connection."""

    def __init__(self, store: EventStore, conn: AsyncConnection[Any]) -> None:
        super().__init__(store, conn)
        self.conn = conn

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        return await _start_operation(self.conn, operation_id, job_id=job_id)


class PgTransaction(PgStreams):
    """:class:`~schemasaga.services.ports.CoreTransaction` on a connection in a transaction."""

    def __init__(
        self,
        conn: AsyncConnection[Any],
        *,
        store: EventStore,
        scheduler: JobScheduler,
        handoff: LocalHandoff | None = None,
    ) -> None:
        super().__init__(store, conn)
        self.conn = conn
        self._scheduler = scheduler
        self._handoff = handoff
        # What the transaction wrote, for the commit observer.
        self.appended: list[RecordedEvent] = []
        self.databases: dict[str, str] = {}
        # The saga jobs it deferred to run now, handed to this process's worker once committed
        # (when it runs one).
        self.ready_jobs: list[int] = []
        # The rows of the operations it finished (as ``get_operation`` reads them), for the commit's
        # ``finished`` hook.
        self.finished: list[dict[str, Any]] = []

    async def lock_stream(self, stream: str) -> int:
        # Pipelined: one round trip. The version's statement starts once the lock's has ended, so its
        # snapshot sees every writer that held the lock before.
        async with self.conn.pipeline():
            await self._store.lock_stream(stream, conn=self.conn)
            return await self._store.stream_version(stream, conn=self.conn)

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int
    ) -> list[RecordedEvent]:
        recorded = await self._store.append(stream, events, expected_version=expected_version, conn=self.conn)
        self.appended.extend(recorded)
        return recorded

    async def save_snapshot(self, stream: str, version: int, state: dict[str, Any]) -> None:
        await self._store.save_snapshot(stream, version, state, conn=self.conn)

    async def project_table(self, table: Table, recorded: Sequence[RecordedEvent]) -> None:
        self.finished.extend(await readmodels.project_table(self.conn, table, recorded))
        self.databases[stream_name(table.table_id)] = table.database

    async def project_database(self, state: DatabaseState) -> None:
        await readmodels.project_database(self.conn, state)

    async def defer_saga(self, *, table_id: UUID, operation_id: UUID, delay: float = 0.0) -> None:
        job_id = await self._scheduler.run_saga(
            conn=self.conn, table_id=table_id, operation_id=operation_id, delay=delay
        )
        if delay <= 0 and self._handoff is not None and self._handoff.expect(job_id):
            self.ready_jobs.append(job_id)

    async def lock_database(self, name: str, *, exclusive: bool) -> bool:
        return await readmodels.lock_database(self.conn, name, exclusive=exclusive)

    async def name_held(self, database: str, name: str) -> bool:
        return await readmodels.name_held(self.conn, database, name)

    async def live_tables(self, database: str) -> int:
        return await readmodels.live_tables(self.conn, database)

    async def trash_held(self, database: str) -> int:
        return await readmodels.trash_held(self.conn, database)

    async def lock_registered_databases(self) -> list[str]:
        return await readmodels.lock_registered_databases(self.conn)

    async def claim_idempotency_key(self, claim: Claim, *, operation_id: str | None) -> bool:
        return await idempotency.claim_key(self.conn, claim, operation_id=operation_id)


class PgCore:
    """:class:`~schemasaga.services.ports.CoreDatabase` on PostgreSQL."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        store: EventStore,
        scheduler: JobScheduler,
        observer: CommitObserver | None = None,
        handoff: LocalHandoff | None = None,
        finished: Callable[[Sequence[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.scheduler = scheduler
        self.observer = observer
        self.handoff = handoff
        # Told, once committed, of the operations each unit of work finished: their rows as committed
        # (this process's ``?wait=`` waiters answer from them).
        self.finished = finished

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        async with self.pool.connection() as conn:
            tx = PgTransaction(conn, store=self.store, scheduler=self.scheduler, handoff=self.handoff)
            try:
                async with conn.transaction():
                    yield tx
            except BaseException:
                if self.handoff is not None and tx.ready_jobs:
                    self.handoff.forget(tx.ready_jobs)
                raise
            # Committed (an exception in the block rolled back and left before this line).
            # The jobs first: their queue notices start no fetch here (handoff.expect), so they must be
            # offered whatever happens next.
            if self.handoff is not None and tx.ready_jobs:
                self.handoff.offer(tx.ready_jobs)
            if self.finished is not None and tx.finished:
                self.finished(tx.finished)
            if self.observer is not None and tx.appended:
                self.observer.committed(tx.appended, tx.databases)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[PgStreams]:
        # The reads of one load (a snapshot, then the events since) share one pool connection: one
        # checkout instead of one per read.
        async with autocommit_connection(self.pool) as conn:
            yield PgStreams(self.store, conn)

    @asynccontextmanager
    async def starting(self) -> AsyncIterator[PgStarting]:
        # Autocommit: the reads see what is committed when each runs (as they would in a READ COMMITTED
        # transaction), and the start is one statement committed as it runs (before the saga's first
        # step, its durability point): no BEGIN and COMMIT round trips around them.
        async with autocommit_connection(self.pool) as conn:
            yield PgStarting(self.store, conn)

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        async with autocommit_connection(self.pool) as conn:
            return await _start_operation(conn, operation_id, job_id=job_id)


async def _start_operation(
    conn: AsyncConnection[Any], operation_id: UUID, *, job_id: int | None
) -> int | None:
    return await job_queries.start_operation(conn, operation_id=operation_id, job_id=job_id)
