"""The unit of work: one core transaction per command, owned in one place.

A service says what to decide; the unit of work does the rest, the same way for every command: lock the
streams it touches, load the aggregates, let the service decide, append their new events, bring the
read models up to date, queue the jobs the decision calls for, commit; and when another writer got in
between (a table loaded before the lock), reload and decide again.

The one rule for jobs: when a transaction changes which operation is at the head of a table's queue
(a new table, a change accepted on a settled table, an outcome with a change waiting behind it), the
job of the new head is deferred in the same transaction. So an event is never committed without the job
that will act on it, and only a table's head operation ever runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from schemasaga.domain.database import DatabaseEvent, DatabaseState
from schemasaga.domain.errors import ConcurrentChange, IdempotencyKeyInFlight, TableNotFound
from schemasaga.domain.events import stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import WrongExpectedVersion
from schemasaga.services import idempotency, repository
from schemasaga.services.ports import CoreDatabase, CoreTransaction

log = logging.getLogger(__name__)

T = TypeVar("T")

# A unit of work that loses a race on a stream reloads and decides again this many times.
MAX_CONFLICT_RETRIES = 20


@dataclass
class _Tracked:
    table: Table
    head_before: UUID | None
    retry: tuple[UUID, float] | None = None
    # Taken as loaded, neither locked nor its version read: checked at the save.
    unchecked: bool = False


@dataclass
class _Registration:
    state: DatabaseState
    events: list[DatabaseEvent] = field(default_factory=list)


class Session:
    """What a service sees of one unit of work: the aggregates it loads and adds, in one transaction."""

    def __init__(self, tx: CoreTransaction, *, first_attempt: bool) -> None:
        self._tx = tx
        self._first_attempt = first_attempt
        self._tables: dict[UUID, _Tracked] = {}
        self._databases: dict[str, _Registration] = {}
        self._requeued: list[tuple[UUID, UUID]] = []

    # -- tables ----------------------------------------------------------------------------------

    async def table(
        self, table_id: UUID, *, loaded: Table | None = None, check_at_save: bool = False
    ) -> Table:
        """The table, its stream locked to the end of the transaction (writers of one table queue here
        rather than race). ``loaded``, a table the caller holds with no unsaved changes, spares the load
        when the stream is still at its version once locked (the append's expected version checks it
        again); otherwise the table is loaded anew, after the writers it waited for.

        ``check_at_save`` (with ``loaded``, on the first attempt): ``loaded`` is taken as it is, without
        the lock and the read of the version (one round trip and two statements less); the save checks
        it, under the stream's lock, with the append's expected version (or, with nothing to append, a
        read of the version under the lock), and a table that changed meanwhile is loaded anew and
        decided again (the next attempt), as a writer that lost the race is."""
        tracked = self._tables.get(table_id)
        if tracked is not None:
            return tracked.table
        if check_at_save and self._first_attempt and loaded is not None and not loaded.changes:
            self._track(loaded)
            self._tables[table_id].unchecked = True
            return loaded
        version = await self._tx.lock_stream(stream_name(table_id))
        if self._first_attempt and loaded is not None and not loaded.changes and loaded.version == version:
            table: Table | None = loaded
        else:
            table = await repository.load_table(self._tx, table_id)
        if table is None:
            raise TableNotFound(f"no table with id {table_id}")
        self._track(table)
        return table

    def add_table(self, table: Table) -> None:
        """A table created by this unit of work."""
        self._track(table)

    def retry_later(self, table: Table, operation_id: UUID, *, delay: float) -> None:
        """Run the operation's saga again in ``delay`` seconds (a transient failure's backoff)."""
        self._tables[table.table_id].retry = (operation_id, delay)

    def requeue(self, table_id: UUID, operation_id: UUID) -> None:
        """Queue a job for an operation whose job is lost (the worker's watchdog)."""
        self._requeued.append((table_id, operation_id))

    def _track(self, table: Table) -> None:
        # The head as committed: a new table (no saved event yet) has none.
        head = table.head if table.version >= 0 else None
        self._tables[table.table_id] = _Tracked(table, head.operation_id if head is not None else None)

    # -- registered databases --------------------------------------------------------------------

    async def database(self, name: str) -> DatabaseState:
        registration = self._databases.get(name)
        if registration is None:
            registration = self._databases[name] = _Registration(
                await repository.load_database(self._tx, name)
            )
        return registration.state

    def record(self, state: DatabaseState, event: DatabaseEvent) -> None:
        """An event of a registered database loaded by :meth:`database`, appended at commit."""
        self._databases[state.name].events.append(event)

    async def lock_database(self, name: str, *, exclusive: bool) -> bool:
        return await self._tx.lock_database(name, exclusive=exclusive)

    async def name_held(self, database: str, name: str) -> bool:
        return await self._tx.name_held(database, name)

    async def live_tables(self, database: str) -> int:
        return await self._tx.live_tables(database)

    async def trash_held(self, database: str) -> int:
        return await self._tx.trash_held(database)

    async def lock_registered_databases(self) -> list[str]:
        return await self._tx.lock_registered_databases()

    # -- commit ----------------------------------------------------------------------------------

    async def _save(self, metadata: Mapping[str, Any], *, snapshot_every: int) -> None:
        tx = self._tx
        for tracked in self._tables.values():
            table = tracked.table
            if tracked.unchecked and not table.changes:
                stream = stream_name(table.table_id)
                version = await tx.lock_stream(stream)
                if version != table.version:
                    raise WrongExpectedVersion(stream, table.version, version)
            recorded = await repository.save_table(
                tx, table, metadata=metadata, snapshot_every=snapshot_every
            )
            if recorded:
                await tx.project_table(table, recorded)
            head = table.head
            if tracked.retry is not None:
                operation_id, delay = tracked.retry
                await tx.defer_saga(table_id=table.table_id, operation_id=operation_id, delay=delay)
            elif head is not None and head.operation_id != tracked.head_before:
                await tx.defer_saga(table_id=table.table_id, operation_id=head.operation_id)
        for registration in self._databases.values():
            if registration.events:
                await repository.save_database(tx, registration.state, registration.events, metadata)
                await tx.project_database(registration.state)
        for table_id, operation_id in self._requeued:
            await tx.defer_saga(table_id=table_id, operation_id=operation_id)


class UnitOfWork:
    def __init__(self, core: CoreDatabase, *, snapshot_every: int) -> None:
        self.core = core
        self.snapshot_every = snapshot_every

    async def run(self, work: Callable[[Session], Awaitable[T]], *, metadata: Mapping[str, Any]) -> T:
        """Run ``work`` in a new transaction and commit what it decided, with ``metadata`` on every
        event; when another writer appended to a stream it loaded first, run it again on fresh state.
        ``work`` may run more than once: it must only decide."""
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                claim = idempotency.current.get()
                if claim is not None and claim.recorded:
                    claim = None
                async with self.core.transaction() as tx:
                    # First: a concurrent request with the same key waits here for this transaction,
                    # then finds the key taken and decides nothing.
                    if claim is not None and not await tx.claim_idempotency_key(
                        claim, operation_id=metadata.get("correlation_id")
                    ):
                        raise IdempotencyKeyInFlight(
                            "another request with this Idempotency-Key was accepted; its answer is not "
                            "recorded yet, ask again"
                        )
                    session = Session(tx, first_attempt=attempt == 0)
                    result = await work(session)
                    await session._save(metadata, snapshot_every=self.snapshot_every)
                if claim is not None:
                    claim.recorded = True
                return result
            except WrongExpectedVersion as exc:
                log.debug(
                    "%s changed concurrently (attempt %d, actor %s), deciding again",
                    exc.stream,
                    attempt + 1,
                    metadata.get("actor"),
                )
        raise ConcurrentChange("the table kept changing concurrently; try again")

    async def load_table(self, table_id: UUID) -> Table:
        """The table as committed now, for a decision taken outside any transaction."""
        async with self.core.reading() as reader:
            table = await repository.load_table(reader, table_id)
        if table is None:
            raise TableNotFound(f"no table with id {table_id}")
        return table

    async def load_tables(self, table_ids: Sequence[UUID]) -> dict[UUID, Table]:
        """Many tables as committed now, read together (drift scans); those with no events are left out."""
        async with self.core.reading() as reader:
            return await repository.load_tables(reader, table_ids)

    async def load_database(self, name: str) -> DatabaseState:
        async with self.core.reading() as reader:
            return await repository.load_database(reader, name)

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        return await self.core.start_operation(operation_id, job_id=job_id)

    async def load_and_start(
        self, table_id: UUID, operation_id: UUID, *, job_id: int | None
    ) -> tuple[Table, int | None]:
        """The table as committed now and, when ``operation_id`` is its head, what
        :meth:`start_operation` answers (0 when it is not: nothing was started), on one connection."""
        async with self.core.starting() as reader:
            table = await repository.load_table(reader, table_id)
            if table is None:
                raise TableNotFound(f"no table with id {table_id}")
            head = table.head
            if head is None or head.operation_id != operation_id:
                return table, 0
            return table, await reader.start_operation(operation_id, job_id=job_id)
