"""The service layer: one method per command or query. Each command is one core transaction that
appends the events, updates the read models and, when the change can start now, defers its job."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.catalog import DatabaseCatalog, DatabaseNotFound
from schemasaga.domain.columns import Column
from schemasaga.domain.errors import DomainError, NameTaken, TableNotFound
from schemasaga.domain.events import stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import WrongExpectedVersion
from schemasaga.jobs.app import JobScheduler
from schemasaga.projections.tables import Q, project
from schemasaga.repository import TableRepository
from schemasaga.sql import queries

log = logging.getLogger(__name__)
DB_QUERIES = queries("databases")

# A command that loses a race on the table's stream reloads and decides again this many times.
MAX_CONFLICT_RETRIES = 20


class TooManyConflicts(DomainError):
    code = "concurrent_change"
    status = 409


@dataclass(frozen=True, slots=True)
class Accepted:
    table_id: UUID
    operation_id: UUID


class TableService:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[Any],
        repository: TableRepository,
        scheduler: JobScheduler,
        catalog: DatabaseCatalog,
    ) -> None:
        self.pool = pool
        self.repository = repository
        self.scheduler = scheduler
        self.catalog = catalog

    # -- commands --------------------------------------------------------------------------------

    async def create_table(self, *, name: str, database: str, metadata: dict[str, Any]) -> Accepted:
        # Reload the catalog without blocking the event loop when this process does not know the name.
        await self.catalog.ensure(database)
        self.catalog.validate_identifier(name, database=database, kind="table")
        operation_id = uuid4()
        metadata = _correlated(metadata, operation_id)
        table = Table.create(table_id=uuid4(), name=name, database=database, operation_id=operation_id)
        try:
            await self._create(table, metadata=metadata)
        except UniqueViolation as exc:
            if exc.diag.constraint_name != "rm_tables_live_name_idx":
                raise
            # One live table per name and database; the transaction rolled back, nothing was written.
            raise NameTaken(
                f"a table named {name!r} already exists in database {database!r} "
                "(a table being deleted keeps its name until its deletion is confirmed)"
            ) from exc
        return Accepted(table.table_id, operation_id)

    async def _create(self, table: Table, *, metadata: dict[str, Any]) -> None:
        database = table.database
        async with self.pool.connection() as conn, conn.transaction():
            # A shared lock on the registry row: a concurrent unregistering waits for this creation
            # (and then sees its live table), and a catalog out of date here cannot create a table
            # in a database another process has just unregistered.
            registered = await (
                await conn.execute(DB_QUERIES["require_database"], {"name": database})
            ).fetchone()
            if registered is None:
                raise DatabaseNotFound(f"no database named {database!r}")
            await self._commit(conn, table, metadata=metadata)

    async def add_column(self, *, table_id: UUID, column: Column, metadata: dict[str, Any]) -> Accepted:
        operation_id = uuid4()

        def decide(table: Table) -> None:
            self.catalog.validate_identifier(column.name, database=table.database, kind="column")
            table.add_column(column, operation_id=operation_id)

        await self._change(table_id, decide, metadata=_correlated(metadata, operation_id))
        return Accepted(table_id, operation_id)

    async def remove_column(self, *, table_id: UUID, name: str, metadata: dict[str, Any]) -> Accepted:
        operation_id = uuid4()
        await self._change(
            table_id,
            lambda t: t.remove_column(name, operation_id=operation_id),
            metadata=_correlated(metadata, operation_id),
        )
        return Accepted(table_id, operation_id)

    async def delete_table(self, *, table_id: UUID, metadata: dict[str, Any]) -> Accepted:
        operation_id = uuid4()
        await self._change(
            table_id,
            lambda t: t.delete(operation_id=operation_id),
            metadata=_correlated(metadata, operation_id),
        )
        return Accepted(table_id, operation_id)

    async def reconcile(self, *, table_id: UUID, strategy: str, metadata: dict[str, Any]) -> Accepted:
        operation_id = uuid4()
        await self._change(
            table_id,
            lambda t: t.reconcile(strategy, operation_id=operation_id),
            metadata=_correlated(metadata, operation_id),
        )
        return Accepted(table_id, operation_id)

    # -- queries ---------------------------------------------------------------------------------

    def catalog_engine(self, database: str) -> str | None:
        """For display: ``None`` for a database this process does not know (unregistered since)."""
        return self.catalog.known_engine(database)

    async def show(self, table_id: UUID) -> dict[str, Any]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["get_table"], {"table_id": table_id})
            row: dict[str, Any] | None = await cur.fetchone()
        if row is None:
            raise TableNotFound(f"no table with id {table_id}")
        return row

    async def list_tables(
        self, *, database: str | None, include_deleted: bool, after: UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                Q["list_tables"],
                {"database": database, "include_deleted": include_deleted, "after": after, "limit": limit},
            )
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    async def history(
        self, table_id: UUID, *, at_version: int | None = None, at_time: datetime | None = None
    ) -> Table:
        """The aggregate as it was at a version or a time (time travel)."""
        return await self.repository.load(table_id, at_version=at_version, at_time=at_time)

    async def events_of(self, table_id: UUID) -> list[dict[str, Any]]:
        events = await self.repository.store.read_stream(stream_name(table_id))
        if not events:
            raise TableNotFound(f"no table with id {table_id}")
        return [
            {
                "event_id": str(e.event_id),
                "event_type": e.event_type,
                "version": e.version,
                "position": e.position,
                "created_at": e.created_at.isoformat(),
                "data": e.data,
                "metadata": e.metadata,
            }
            for e in events
        ]

    async def operation(self, operation_id: UUID) -> dict[str, Any] | None:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["get_operation"], {"operation_id": operation_id})
            row: dict[str, Any] | None = await cur.fetchone()
            return row

    async def operations(
        self, *, table_id: UUID | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["list_operations"], {"table_id": table_id, "status": status, "limit": limit})
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    # -- internals -------------------------------------------------------------------------------

    async def _change(
        self, table_id: UUID, decide: Callable[[Table], None], *, metadata: dict[str, Any]
    ) -> None:
        await update_table(
            self.pool,
            self.repository,
            table_id,
            decide,
            lambda conn, table: self._commit(conn, table, metadata=metadata),
        )

    async def _commit(self, conn: AsyncConnection[Any], table: Table, *, metadata: dict[str, Any]) -> None:
        recorded = await self.repository.save(table, conn=conn, metadata=metadata)
        await project(conn, table, recorded)
        head = table.head
        # Only the first pending change runs; the ones behind it are started by the saga that
        # finishes before them, in the same transaction as its outcome.
        if head is not None and len(table.pending) == 1:
            await self.scheduler.run_saga(conn=conn, table_id=table.table_id, operation_id=head.operation_id)


async def update_table(
    pool: AsyncConnectionPool[Any],
    repository: TableRepository,
    table_id: UUID,
    decide: Callable[[Table], None],
    commit: Callable[[AsyncConnection[Any], Table], Awaitable[None]],
    *,
    loaded: Table | None = None,
) -> Table:
    """Lock the table's stream, load, decide and commit in one transaction; should an append still come
    between (a table held from before the lock), reload and decide again.

    ``loaded``, a table the caller holds with no unsaved changes, spares the first load: the save's
    expected version still refuses it if someone appended since, and the retry then reloads."""
    for attempt in range(MAX_CONFLICT_RETRIES):
        try:
            async with pool.connection() as conn, conn.transaction():
                # Writers of one table queue here rather than race: under contention, optimistic
                # retries alone could lose again and again (a burst of commands after an outage).
                await repository.store.lock_stream(stream_name(table_id), conn=conn)
                if attempt == 0 and loaded is not None and not loaded.changes:
                    table = loaded
                else:
                    table = await repository.load(table_id, conn=conn)
                decide(table)
                await commit(conn, table)
                return table
        except WrongExpectedVersion:
            log.debug("table %s changed concurrently (attempt %d), deciding again", table_id, attempt + 1)
    raise TooManyConflicts(f"table {table_id} kept changing concurrently; try again")


def _correlated(metadata: dict[str, Any], operation_id: UUID) -> dict[str, Any]:
    """Every event of one operation shares its correlation id: the operation id."""
    return {**metadata, "correlation_id": str(operation_id)}
