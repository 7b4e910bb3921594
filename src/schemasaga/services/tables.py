"""The table commands: each decides on the Table aggregate in one unit of work, which records the events,
updates the read models and, when the change can start now, queues its saga.

Every change is planned before it is accepted: the table's engine writes the statements its saga will
run (``SchemaAdapter.plan_change``), the plan is recorded with the change's event, and ``dry_run`` answers
the plan and writes nothing. ``expected_version`` (``If-Match``) refuses a change decided on a version of
the table that is no longer the current one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from uuid import UUID, uuid4

from schemasaga.byodb.errors import PermanentByodbError, TransientByodbError
from schemasaga.byodb.rowchecks import RowCheck
from schemasaga.domain.changes import (
    AddColumn,
    AddIndex,
    AlterColumn,
    Change,
    CreateTable,
    DeleteTable,
    DropIndex,
    RemoveColumn,
    RenameTable,
    RestoreColumn,
    RestoreTable,
    check_column,
    trash_name,
)
from schemasaga.domain.columns import Column, Index, TableSchema
from schemasaga.domain.errors import (
    ColumnNotFound,
    DatabaseNotFound,
    DatabaseUnavailable,
    IncompatibleRows,
    IndexNotFound,
    TableExistsUnmanaged,
    TableNotFound,
    UndoUnsupported,
    UnsupportedChange,
    VersionMismatch,
)
from schemasaga.domain.plan import Plan
from schemasaga.domain.schema import LiveTable
from schemasaga.domain.table import Table, new_table_schema
from schemasaga.services.ports import PLANNED_FROM_SCHEMAS, Connections, SchemaAdapter
from schemasaga.services.unit_of_work import Session, UnitOfWork

log = logging.getLogger(__name__)

T = TypeVar("T")

UNSET: Any = object()
"""A field a patch leaves as it is (``None`` is a value: no default)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    table_id: UUID
    operation_id: UUID
    # What the caller should know of the accepted change (a removed column whose values cannot be kept).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Planned:
    """What a change would do (``dry_run``): nothing was written."""

    table_id: UUID | None
    plan: Plan
    before: TableSchema | None
    after: TableSchema


@dataclass(frozen=True, slots=True)
class Asked:
    """How a change is asked for: on which version of the table (``If-Match``), or only planned."""

    expected_version: int | None = None
    dry_run: bool = False


NOW = Asked()


Decision = Callable[[Table, UUID], None]
"""What a command decides on the table, given the id of the operation it starts."""


@dataclass(frozen=True, slots=True)
class ColumnPatch:
    """The fields of a column to change; ``UNSET`` leaves one as it is."""

    name: Any = UNSET
    type: Any = UNSET
    nullable: Any = UNSET
    default: Any = UNSET
    unique: Any = UNSET

    def applied_to(self, column: Column) -> Column:
        changes = {k: getattr(self, k) for k in ("name", "type", "nullable", "default", "unique")}
        changed = replace(column, **{k: v for k, v in changes.items() if v is not UNSET})
        # A default kept through a type change must be a value of the new type too (or be dropped).
        return check_column(changed)


NO_KEY_WARNING = (
    "the table has no primary key: the column's values cannot be kept in the trash and are dropped with it"
)


class TableCommands:
    def __init__(self, *, uow: UnitOfWork, connections: Connections, trash_retention_s: int = 0) -> None:
        """``trash_retention_s``: how long a deleted table or removed column stays restorable in the
        trash (0: nothing is kept, a deletion drops at once)."""
        self.uow = uow
        self.connections = connections
        self.trash_retention_s = trash_retention_s

    async def _adapter(self, database: str) -> SchemaAdapter:
        """The database's adapter: the one open already, or opened in a thread (a miss may reload the
        registry, which blocks)."""
        adapter = self.connections.open_adapter(database)
        if adapter is None:
            adapter = await asyncio.to_thread(self.connections.adapter, database)
        return adapter

    # -- creating ----------------------------------------------------------------------------------

    async def create_table(
        self,
        *,
        name: str,
        database: str,
        metadata: Mapping[str, Any],
        columns: tuple[Column, ...] = (),
        indexes: tuple[Index, ...] = (),
        dry_run: bool = False,
    ) -> Accepted | Planned:
        # Reload the registry without blocking the event loop when this process does not know the name.
        await self.connections.ensure(database)
        self.connections.validate_identifier(name, database=database, kind="table")
        for column in columns:
            self.connections.validate_identifier(column.name, database=database, kind="column")
        for index in indexes:
            self.connections.validate_identifier(index.name, database=database, kind="index")
        schema = new_table_schema(name, columns, indexes)
        change = CreateTable(schema)
        adapter = await self._adapter(database)

        def plan_and_look() -> tuple[Plan, LiveTable | None]:
            """The plan, and a table of that name there already: one hand-over to the database's threads."""
            plan = adapter.plan_change(None, schema, change)
            try:
                return plan, adapter.inspect_table(name)
            except Exception as exc:  # unreachable now: accepted, and its saga waits for the database
                log.info("could not look for an unmanaged table %r in %r first: %s", name, database, exc)
                return plan, None

        plan, live = await adapter.run(plan_and_look)
        if dry_run:
            if live is not None:
                warning = (
                    f"refused as it stands: database {database!r} has a table {live.name!r} already; "
                    "track it (POST /v1/tables/track) if schemasaga should manage it"
                )
                plan = replace(plan, warnings=(*plan.warnings, warning))
            return Planned(None, plan, None, schema)
        operation_id = uuid4()
        table = Table.create(
            table_id=uuid4(),
            name=name,
            database=database,
            operation_id=operation_id,
            columns=columns,
            indexes=indexes,
            plan=plan,
        )

        async def create(session: Session) -> None:
            # A shared lock on the registration: a concurrent unregistering waits for this creation (and
            # then sees its live table), and a process whose registry is out of date cannot create a
            # table in a database another process has just unregistered.
            if not await session.lock_database(database, exclusive=False):
                raise DatabaseNotFound(f"no database named {database!r}")
            if live is not None and not await session.name_held(database, name):
                raise TableExistsUnmanaged(
                    f"database {database!r} has a table {live.name!r} that schemasaga does not manage; "
                    "track it (POST /v1/tables/track) to manage it as it is, or choose another name"
                )
            session.add_table(table)

        await self.uow.run(create, metadata=correlated(metadata, operation_id))
        return Accepted(table.table_id, operation_id)

    async def track_table(self, *, name: str, database: str, metadata: Mapping[str, Any]) -> Accepted:
        """Start managing a table that exists already: its live schema becomes the metadata, with no DDL.
        A table that another table of this database holds the name of is refused (NameTaken)."""
        await self.connections.ensure(database)
        self.connections.validate_identifier(name, database=database, kind="table")
        adapter = await self._adapter(database)
        live = await adapter.run(adapter.inspect_table, name)
        if live is None or not adapter.is_table(live, name):
            raise TableNotFound(f"database {database!r} has no table {name!r} to track")
        unknown = [f"{c.name} ({c.raw_type})" for c in live.columns if c.type is None]
        if unknown:
            raise UnsupportedChange(
                f"table {name!r} has columns of types schemasaga does not manage: {unknown}"
            )
        try:
            schema = live.to_schema()
        except ValueError as exc:  # an expression default or index: nothing schemasaga could plan
            raise UnsupportedChange(f"table {name!r} cannot be tracked: {exc}") from None
        operation_id = uuid4()
        table = Table.track(table_id=uuid4(), schema=schema, database=database, operation_id=operation_id)

        async def track(session: Session) -> None:
            if not await session.lock_database(database, exclusive=False):
                raise DatabaseNotFound(f"no database named {database!r}")
            session.add_table(table)

        await self.uow.run(track, metadata=correlated(metadata, operation_id))
        return Accepted(table.table_id, operation_id)

    # -- changing ----------------------------------------------------------------------------------

    async def add_column(
        self,
        *,
        table_id: UUID,
        column: Column,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        return await self.change(table_id, lambda t: AddColumn(check_column(column)), metadata, asked)

    async def remove_column(
        self,
        *,
        table_id: UUID,
        name: str,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        unkeyed: list[bool] = []  # the removal (as last decided) could not keep the values

        def removal(table: Table) -> Change:
            column = table.schema.column(name)
            if column is None:
                raise ColumnNotFound(f"table {table.name!r} has no column {name!r}")
            kept = self._into_trash(table, RemoveColumn(column))
            unkeyed[:] = [bool(self.trash_retention_s) and not kept.trash]
            return kept

        result = await self.change(table_id, removal, metadata, asked)
        if isinstance(result, Accepted) and unkeyed == [True]:
            return replace(result, warnings=(NO_KEY_WARNING,))
        return result

    def _into_trash(self, table: Table, removal: RemoveColumn) -> RemoveColumn:
        """``removal`` keeping the column's values in the trash, keyed by the table's primary key; as it is
        when the trash is off or the table has no primary key (the values are dropped with the column)."""
        key = tuple(c for c in table.schema.columns if c.primary_key)
        retention = self.trash_retention_s
        if not retention or not key:
            return removal
        return replace(removal, trash=trash_name(uuid4().hex), key=key, retention_s=retention)

    async def alter_column(
        self,
        *,
        table_id: UUID,
        name: str,
        patch: ColumnPatch,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        def alteration(table: Table) -> Change:
            column = table.schema.column(name)
            if column is None:
                raise ColumnNotFound(f"table {table.name!r} has no column {name!r}")
            return AlterColumn(name, patch.applied_to(column))

        return await self.change(table_id, alteration, metadata, asked)

    async def rename_table(
        self,
        *,
        table_id: UUID,
        name: str,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        return await self.change(table_id, lambda t: RenameTable(name), metadata, asked)

    async def add_index(
        self,
        *,
        table_id: UUID,
        index: Index,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        return await self.change(table_id, lambda t: AddIndex(index), metadata, asked)

    async def drop_index(
        self,
        *,
        table_id: UUID,
        name: str,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        def drop(table: Table) -> Change:
            index = table.schema.index(name)
            if index is None:
                raise IndexNotFound(f"table {table.name!r} has no index {name!r}")
            return DropIndex(index)

        return await self.change(table_id, drop, metadata, asked)

    async def delete_table(
        self,
        *,
        table_id: UUID,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
        purge: bool = False,
    ) -> Accepted | Planned:
        """Delete the table: into the trash (renamed, restorable until its retention ends), or dropped
        at once with ``purge`` or when the trash is off."""
        if purge or not self.trash_retention_s:
            return await self.change(table_id, lambda t: DeleteTable(), metadata, asked)
        return await self.change(table_id, lambda t: self._trashed(), metadata, asked)

    def _trashed(self) -> DeleteTable:
        """A deletion into the trash, kept for the configured retention."""
        return DeleteTable(trash=trash_name(uuid4().hex), retention_s=self.trash_retention_s)

    async def undo(
        self,
        *,
        table_id: UUID,
        operation_id: UUID,
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
    ) -> Accepted | Planned:
        """Start the inverse of completed operation ``operation_id`` of the table as a new operation, planned
        and checked against the rows like any change (``Table.undo`` says which change, or why not)."""
        table = await self.uow.load_table(table_id)
        _check_version(table, asked.expected_version)
        undo = table.undo(operation_id)
        if isinstance(undo, RestoreTable | RestoreColumn):
            return await self._restore(table, undo, metadata, asked, undoes=operation_id)
        return await self.change(
            table_id, lambda t: self._kept(t, t.undo(operation_id)), metadata, asked, undoes=operation_id
        )

    def _kept(self, table: Table, undo: Change) -> Change:
        """An undo that drops what holds rows keeps them in the trash, as a deletion or a removal does: the
        undo of a creation trashes the table (refused when the trash is off: that would drop the table
        and its rows at once), the undo of an added column keeps its values."""
        match undo:
            case DeleteTable():
                if not self.trash_retention_s:
                    raise UndoUnsupported(
                        "undoing a table's creation moves the table to the trash, and the trash is off "
                        "(SCHEMASAGA_TRASH_RETENTION=0): delete the table instead if its rows may go",
                        details={"needs": "trash", "kind": "create_table"},
                    )
                return self._trashed()
            case RemoveColumn():
                return self._into_trash(table, undo)
        return undo

    async def _restore(
        self,
        table: Table,
        change: RestoreTable | RestoreColumn,
        metadata: Mapping[str, Any],
        asked: Asked,
        *,
        undoes: UUID,
    ) -> Accepted | Planned:
        """An undo that restores from the trash (a deletion's, a column removal's): accepted as the trash's
        restore is (``services.trash``), with no plan (its saga renames, or adds and fills from the trash)."""
        _check_version(table, asked.expected_version)
        if asked.dry_run:
            engine = self.connections.known_engine(table.database) or "unknown"
            note = f"restores from the trash table {change.trash!r} with its rows"
            before = table.schema
            return Planned(table.table_id, Plan(engine, (), (note,)), before, change.apply(before))
        operation_id = uuid4()

        async def decide(session: Session) -> None:
            current = await session.table(table.table_id)
            _check_version(current, asked.expected_version)
            current.accept(change, operation_id=operation_id, undoes=undoes)

        await self.uow.run(decide, metadata=correlated(metadata, operation_id))
        return Accepted(table.table_id, operation_id)

    async def reconcile(self, *, table_id: UUID, strategy: str, metadata: Mapping[str, Any]) -> Accepted:
        return await self._decide(table_id, lambda t, op: t.reconcile(strategy, operation_id=op), metadata)

    async def change(
        self,
        table_id: UUID,
        make: Callable[[Table], Change],
        metadata: Mapping[str, Any],
        asked: Asked = NOW,
        *,
        undoes: UUID | None = None,
    ) -> Accepted | Planned:
        """Plan the change ``make`` builds from the table as it is now, then (unless ``dry_run``) accept it
        with that plan; refused when ``expected_version`` is given and the table is at another one.
        ``undoes``: the operation the change undoes."""
        expected_version = asked.expected_version
        table = await self.uow.load_table(table_id)
        _check_version(table, expected_version)
        change = make(table)
        before, after = table.preview(change)
        if isinstance(change, AddColumn | AlterColumn | RenameTable | AddIndex):
            names = [(c.name, "column") for c in change.columns] + (
                [(change.name, "table")] if isinstance(change, RenameTable) else []
            )
            if isinstance(change, AddIndex):
                names.append((change.index.name, "index"))
            for name, kind in names:
                self.connections.validate_identifier(name, database=table.database, kind=kind)
        plan = await self._plan(table.database, before, after, change)
        if isinstance(change, RemoveColumn) and not change.trash and self.trash_retention_s:
            if not any(c.primary_key for c in before.columns):
                plan = replace(plan, warnings=(*plan.warnings, NO_KEY_WARNING))
        rows = await self._check_rows(table, before, after, change)
        if isinstance(rows, str):
            plan, rows = replace(plan, warnings=(*plan.warnings, rows)), None
        if asked.dry_run:
            if rows is not None:
                plan = replace(plan, warnings=(*plan.warnings, f"refused as it stands: {rows.message}"))
            return Planned(table_id, plan, before, after)
        if rows is not None:
            raise IncompatibleRows(
                f"table {table.name!r}: {rows.message}; nothing was changed",
                details={"count": rows.count, "primary_keys": list(rows.primary_keys)},
            )

        operation_id = uuid4()

        async def decide(session: Session) -> None:
            # The table just loaded spares a second load on the first attempt: the append's expected
            # version refuses it if a change got in since, and the next attempt decides on a fresh one.
            current = await session.table(table_id, loaded=table)
            _check_version(current, expected_version)
            accepted_change, accepted_plan = change, plan
            if current.schema != before:
                # Other changes were accepted meanwhile: this one queues behind them, decided and planned
                # on the schema they will leave (refused if it no longer fits it).
                accepted_change = make(current)
                now_before, now_after = current.preview(accepted_change)
                accepted_plan = await self._plan(current.database, now_before, now_after, accepted_change)
            current.accept(accepted_change, operation_id=operation_id, plan=accepted_plan, undoes=undoes)

        await self.uow.run(decide, metadata=correlated(metadata, operation_id))
        return Accepted(table_id, operation_id)

    async def _plan(
        self, database: str, before: TableSchema | None, after: TableSchema, change: Change
    ) -> Plan:
        adapter = await self._adapter(database)
        if isinstance(change, PLANNED_FROM_SCHEMAS):
            # No question to the database: rendered here, in less time than a hand-over to its threads
            # and back takes.
            return await _asking(database, _at_once(adapter.plan_change, before, after, change))
        return await _asking(database, adapter.run(adapter.plan_change, before, after, change))

    async def _check_rows(
        self, table: Table, before: TableSchema, after: TableSchema, change: Change
    ) -> RowCheck | str | None:
        """The live rows ``change`` could not keep, checked before anything is written. Only a settled
        table's rows are what the change will meet: one queued behind others is checked by its saga.
        The names the change would take are checked too (a refusal is UnsupportedChange). A database
        unreachable now does not refuse the change (its saga waits for it, and checks the rows and names
        before any DDL): then why they were not checked."""
        if not table.synced or not isinstance(change, AlterColumn | AddIndex | AddColumn | RenameTable):
            return None
        adapter = await self._adapter(table.database)
        try:
            return await _asking(table.database, adapter.run(adapter.check_rows, before, after, change))
        except DatabaseUnavailable as exc:
            log.info("rows of %r not checked before accepting a change: %s", table.name, exc.message)
            return (
                f"the rows were not checked: database {table.database!r} cannot be reached now; "
                "the change checks them before its DDL"
            )

    async def _decide(self, table_id: UUID, decide: Decision, metadata: Mapping[str, Any]) -> Accepted:
        operation_id = uuid4()

        async def change(session: Session) -> None:
            decide(await session.table(table_id), operation_id)

        await self.uow.run(change, metadata=correlated(metadata, operation_id))
        return Accepted(table_id, operation_id)


async def _asking(database: str, question: Awaitable[T]) -> T:
    """What the user's database answers while a change is being planned; its failures become the
    command's: unavailable (503, retry) or a change it cannot make (422), and nothing is written."""
    try:
        return await question
    except TransientByodbError as exc:
        raise DatabaseUnavailable(
            f"database {database!r} could not be asked to plan the change: {exc}"
        ) from None
    except PermanentByodbError as exc:
        raise UnsupportedChange(f"database {database!r} cannot make the change: {exc}") from None


async def _at_once(action: Callable[..., T], /, *args: Any) -> T:
    """``action(*args)`` on the event loop, as an awaitable (for :func:`_asking`)."""
    return action(*args)


def only_accepted(result: Accepted | Planned) -> Accepted:
    """The answer of a command asked for without ``dry_run``, which always accepts or raises."""
    if isinstance(result, Planned):
        raise TypeError("a change asked for without dry_run was only planned")
    return result


def _check_version(table: Table, expected: int | None) -> None:
    if expected is not None and table.version != expected:
        raise VersionMismatch(
            f"table {table.name!r} is at version {table.version}, not {expected}: it changed since; "
            "read it again and decide anew"
        )


def correlated(metadata: Mapping[str, Any], operation_id: UUID) -> dict[str, Any]:
    """Every event of one operation shares its correlation id: the operation id."""
    return {**metadata, "correlation_id": str(operation_id)}
