"""What the services need of the world outside the domain, as protocols.

``coredb`` implements the core database's side (:class:`CoreDatabase`, :class:`CoreTransaction`) and
the read side (:class:`~schemasaga.services.views.ReadModels`); ``byodb`` the users' databases
(:class:`Connections`, :class:`SchemaAdapter`). ``tests/fakes.py`` holds in-memory implementations of
each, so that the services' decisions can be tested in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar
from uuid import UUID

from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.byodb.identity import DatabaseIdentity
from schemasaga.byodb.rowchecks import RowCheck
from schemasaga.domain.changes import AddColumn, Change, CreateTable, DeleteTable, RemoveColumn
from schemasaga.domain.columns import Column, Index, TableSchema
from schemasaga.domain.database import DatabaseState
from schemasaga.domain.plan import Plan
from schemasaga.domain.schema import LiveTable
from schemasaga.domain.table import Table
from schemasaga.eventstore import NewEvent, RecordedEvent
from schemasaga.services.idempotency import Claim

T = TypeVar("T")

PLANNED_FROM_SCHEMAS = (CreateTable, AddColumn, RemoveColumn, DeleteTable)
"""The kinds of change whose plan :meth:`SchemaAdapter.plan_change` renders from the schemas alone."""


class StreamReader(Protocol):
    """Reads of the event store's streams and snapshots."""

    async def read_stream(
        self, stream: str, *, from_version: int = 0, to_version: int | None = None
    ) -> list[RecordedEvent]: ...

    async def load_snapshot(
        self, stream: str, *, max_version: int | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """The newest snapshot at or below ``max_version``: its version and state."""

    async def latest_snapshots(self, streams: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        """The newest snapshot of each stream that has one (many aggregates loaded at once)."""

    async def read_streams_from(self, from_versions: Mapping[str, int]) -> list[RecordedEvent]:
        """The events of each stream from its version on, stream by stream, each in version order."""


class OperationStart(StreamReader, Protocol):
    """Reads, then the start of an operation, on one connection (a saga job's load of its table and its
    start: one checkout instead of two). Each sees what is committed when it runs."""

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        """As :meth:`CoreDatabase.start_operation`: committed when it answers."""


class CoreTransaction(StreamReader, Protocol):
    """One transaction on the core database, as a unit of work uses it. Nothing it writes is seen by
    others before the unit of work commits, and all of it is gone if it does not."""

    async def lock_stream(self, stream: str) -> int:
        """Hold the stream's lock to the end of the transaction: its writers queue rather than race.
        Returns the stream's version once the lock is held (-1: no stream)."""

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int
    ) -> list[RecordedEvent]:
        """Raises :class:`~schemasaga.eventstore.WrongExpectedVersion` when another writer came first."""

    async def save_snapshot(self, stream: str, version: int, state: dict[str, Any]) -> None: ...

    async def project_table(self, table: Table, recorded: Sequence[RecordedEvent]) -> None:
        """Bring the read models up to date with ``table`` after ``recorded`` were appended for it.
        Raises :class:`~schemasaga.domain.errors.NameTaken` when another table of its database holds its
        name (one table per name and database, from its creation until it lets the name go)."""

    async def project_database(self, state: DatabaseState) -> None:
        """Bring the registry's read model up to date with ``state``. Raises
        :class:`~schemasaga.domain.errors.DatabaseAlreadyRegistered` when another registration holds
        its identity."""

    async def defer_saga(self, *, table_id: UUID, operation_id: UUID, delay: float = 0.0) -> None:
        """Queue the job that runs the operation's saga (``delay`` seconds from now), committed with
        the transaction or not at all."""

    async def lock_database(self, name: str, *, exclusive: bool) -> bool:
        """Lock the registration of ``name`` (shared: no one unregisters it meanwhile; exclusive: no one
        creates a table in it meanwhile); False when no database of that name is registered."""

    async def name_held(self, database: str, name: str) -> bool:
        """Whether a table of ``database`` holds ``name`` (in any letter case)."""

    async def live_tables(self, database: str) -> int: ...

    async def trash_held(self, database: str) -> int:
        """The trash's entries in ``database`` not yet restored or purged."""

    async def lock_registered_databases(self) -> list[str]:
        """Every registered database's name, each locked against every other change."""

    async def claim_idempotency_key(self, claim: Claim, *, operation_id: str | None) -> bool:
        """Take the request's key in this transaction: False when another request holds it (after
        waiting for that request's transaction to end, when it is in flight)."""


class CoreDatabase(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[CoreTransaction]:
        """A new transaction, committed when the block ends normally, rolled back otherwise."""

    def reading(self) -> AbstractAsyncContextManager[StreamReader]:
        """Reads outside a transaction (each one sees what is committed when it runs); never writes."""

    def starting(self) -> AbstractAsyncContextManager[OperationStart]:
        """Reads and an operation's start on one connection; the start is committed when it answers."""

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        """Mark the operation running and answer how many times a worker started it, this time
        included (0 when the read model does not know it as open); unless another job of it waits for
        its backoff (a retry scheduled while ``job_id``, its fallback job, waited): then None, and
        nothing changes."""


class SchemaAdapter(Protocol):
    """Inspected, idempotent DDL on one user database (blocking: called from a thread)."""

    engine: str

    async def run(self, action: Callable[..., T], /, *args: Any) -> T:
        """``action(*args)`` on this database's own threads: a database that does not answer holds
        only its own threads, never another database's nor the event loop's default ones."""

    def inspect_table(self, name: str) -> LiveTable | None: ...

    def inspect_tables(self, names: Sequence[str]) -> list[LiveTable | PermanentByodbError | None]:
        """Several tables in one step (one connection and transaction, for drift scans): for each name,
        what ``inspect_table`` answers, or the :class:`PermanentByodbError` it raises."""

    def list_tables(self) -> list[str]: ...

    def is_table(self, live: LiveTable, name: str) -> bool: ...

    def create_table(
        self,
        name: str,
        columns: Sequence[Column],
        indexes: Sequence[Index] = (),
        *,
        refuse_existing: bool = False,
    ) -> bool:
        """``refuse_existing``: any table of that name there already is a
        :class:`~schemasaga.byodb.errors.TableThere`. The table made (as read back after the DDL) or
        found is compared with the schema: any difference is a permanent error (the creation's
        verification relies on it when it runs in the same call)."""

    def add_column(self, table: str, column: Column) -> bool: ...

    def drop_column(self, table: str, column: str) -> bool: ...

    def drop_table(self, name: str) -> bool: ...

    def rename_table(self, name: str, new_name: str) -> bool: ...

    def copy_to_trash(self, table: str, column: str, key: Sequence[Column], trash: str) -> bool: ...

    def fill_from_trash(
        self, table: str, column: str, source: str, key: Sequence[Column], trash: str
    ) -> int: ...

    def count_rows(self, name: str) -> int | None: ...

    def blockers(self, table: str) -> list[dict[str, Any]]:
        """The sessions holding ``table``'s lock (session, query, held_for_s, state), as far as known."""

    def plan_change(self, before: TableSchema | None, after: TableSchema, change: Change) -> Plan:
        """The statements ``change`` runs on this engine to take the table from ``before`` (``None``: no
        table yet) to ``after``, with their locks, costs and warnings; may read the live table, except
        for the kinds of ``PLANNED_FROM_SCHEMAS`` (rendered from the schemas alone: callers may plan those
        on the event loop)."""

    def ping(self) -> None: ...

    def server_version(self) -> str: ...

    def check_rows(self, before: TableSchema, after: TableSchema, change: Change) -> RowCheck | None:
        """The live rows ``change`` could not keep (count and up to five primary keys), or None."""

    def live_state(self, before: TableSchema, after: TableSchema, change: Change | None = None) -> str:
        """``"after"``, ``"middle"`` (PostgreSQL, between a plan's transaction and its CONCURRENTLY
        statements), ``"before"`` or ``"neither"``: where the live table stands for the change."""

    def apply_plan(
        self, before: TableSchema, after: TableSchema, plan: Plan, *, change: Change | None = None
    ) -> bool:
        """Run exactly ``plan``'s statements, inspect-first: False when the table is ``after`` already;
        PermanentByodbError when it is neither ``before`` nor ``after`` or rows do not fit the change."""


class Connections(Protocol):
    """The users' databases this process can reach, by registered name."""

    async def ensure(self, name: str) -> None:
        """Raise :class:`~schemasaga.domain.errors.DatabaseNotFound` unless ``name`` is registered."""

    def adapter(self, name: str) -> SchemaAdapter:
        """Blocking (a miss reloads the registry): call it from a thread."""

    def open_adapter(self, name: str) -> SchemaAdapter | None:
        """The adapter of ``name`` when this process has it open already, without blocking (on the event
        loop); ``None`` otherwise: then :meth:`adapter`, from a thread."""

    def known_engine(self, name: str) -> str | None:
        """For display, without blocking: ``None`` when this process does not know the name (yet)."""

    def validate_identifier(self, name: str, *, database: str, kind: str) -> None: ...

    def names(self) -> list[str]: ...

    def register(self, name: str, url: str, *, pinned: bool = False, identity: str | None = None) -> None:
        """Know ``name`` at ``url``; every new connection to it must reach the database of ``identity``
        (the one stored with the registration) and, on PostgreSQL, not the core database (unless pinned:
        the configured default, the operator's)."""

    def forget(self, name: str) -> None: ...


class DatabaseProbe(Protocol):
    """Connections to a database by its URL, to register it (each raises a classified ByodbError, or
    TimeoutError when the database does not answer within ``timeout`` seconds)."""

    timeout: float

    async def probe(self, url: str) -> tuple[str, DatabaseIdentity]:
        """The server's version and which physical database the URL reaches."""

    async def identify(self, url: str) -> DatabaseIdentity: ...


class OwnDatabase(Protocol):
    """The service's own core database, which no registration may reach."""

    whole_server: bool
    """The embedded server: the service's alone, so none of its databases may be registered."""

    async def identity(self) -> DatabaseIdentity:
        """The core database's identity, read now."""


class SagaMetrics(Protocol):
    """What the saga runner reports for monitoring (bootstrap gives it Prometheus's; by default nothing
    is recorded). Labels are bounded: operation kinds, engines, step names, error classes."""

    def step_finished(self, *, kind: str, engine: str, step: str, seconds: float) -> None: ...

    def saga_finished(self, *, kind: str, engine: str, outcome: str, seconds: float) -> None:
        """``outcome``: "completed" or "rejected"."""

    def retried(self, *, kind: str, engine: str, error: BaseException) -> None:
        """An attempt failed transiently and runs again later."""


class NoSagaMetrics:
    def step_finished(self, *, kind: str, engine: str, step: str, seconds: float) -> None:
        pass

    def saga_finished(self, *, kind: str, engine: str, outcome: str, seconds: float) -> None:
        pass

    def retried(self, *, kind: str, engine: str, error: BaseException) -> None:
        pass
