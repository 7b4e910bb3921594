"""The Table aggregate: decides which events a command produces and folds events into state.

State distinguishes what is *confirmed* (the physical schema as last reported by a finished saga)
from what is *intended* (confirmed plus the changes still in flight, in acceptance order). Commands
are validated against the intended state, so a change that conflicts with a pending one is refused
at once; the demo's ``columns`` shows the intended state and ``synced`` says whether it is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from schemasaga.domain.changes import (
    AddColumn,
    AddIndex,
    Adopt,
    Change,
    CreateTable,
    DeleteTable,
    DropIndex,
    OperationKind,
    PurgeTrash,
    RemoveColumn,
    Repair,
    RestoreColumn,
    RestoreTable,
    change_from_dict,
    check_column,
    check_name,
    inverse,
)
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, Index, TableSchema
from schemasaga.domain.errors import (
    ColumnExists,
    ColumnNotFound,
    DomainError,
    IllegalTransition,
    IndexNotFound,
    TableGone,
    TrashNotFound,
    TrashPurged,
    UnsupportedChange,
)
from schemasaga.domain.events import (
    SagaAttemptFailed,
    SagaCompensationStarted,
    SagaStepCompleted,
    TableAltered,
    TableChangeConfirmed,
    TableChanged,
    TableChangeRejected,
    TableCreated,
    TableCreationConfirmed,
    TableCreationRejected,
    TableDeleted,
    TableDeletionConfirmed,
    TableDeletionRejected,
    TableDriftDetected,
    TableEvent,
    TableReconciliationRequested,
    TableSchemaAdopted,
    TableTracked,
)
from schemasaga.domain.plan import Plan
from schemasaga.domain.undo import (
    EVERYTHING,
    NEEDS_TRASH,
    TRACK_TABLE,
    UNDO_REACH,
    DoneOperation,
    InFlight,
    is_the_undo,
    touches,
    undo_change,
)

__all__ = ["OperationKind", "PendingOperation", "Table", "TrashEntry", "new_table_schema"]


@dataclass(slots=True)
class PendingOperation:
    """A change accepted but not finished: its saga's progress so far."""

    operation_id: UUID
    change: Change
    # The statements its saga runs, as planned when it was accepted (None: recorded before plans).
    plan: Plan | None = None
    steps_done: list[str] = field(default_factory=list)
    failed_attempts: int = 0
    compensating: bool = False
    compensation_reason: str | None = None
    # The operation this one undoes (POST /v1/operations/{id}/undo).
    undoes: UUID | None = None

    @property
    def kind(self) -> OperationKind:
        return self.change.kind

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.change.columns

    @property
    def column(self) -> Column:
        return self.columns[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation_id": str(self.operation_id),
            "kind": self.kind.value,
            "columns": [c.to_dict() for c in self.columns],
            "change": self.change.to_dict(),
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "steps_done": list(self.steps_done),
            "failed_attempts": self.failed_attempts,
            "compensating": self.compensating,
            "compensation_reason": self.compensation_reason,
            "undoes": str(self.undoes) if self.undoes is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, table_name: str) -> PendingOperation:
        if "change" in data:
            change = change_from_dict(data["change"])
        else:  # a snapshot taken before changes were values
            change = _legacy_change(OperationKind(data["kind"]), data["columns"], table_name)
        plan = data.get("plan")
        undoes = data.get("undoes")
        return cls(
            operation_id=UUID(data["operation_id"]),
            change=change,
            plan=Plan.from_dict(plan) if plan is not None else None,
            steps_done=list(data["steps_done"]),
            failed_attempts=int(data["failed_attempts"]),
            compensating=bool(data["compensating"]),
            compensation_reason=data["compensation_reason"],
            undoes=UUID(undoes) if undoes is not None else None,
        )


def _legacy_change(kind: OperationKind, columns: list[dict[str, Any]], table_name: str) -> Change:
    cols = tuple(Column.from_dict(c) for c in columns)
    match kind:
        case OperationKind.CREATE_TABLE:
            return CreateTable(TableSchema(table_name, cols))
        case OperationKind.ADD_COLUMN:
            return AddColumn(cols[0])
        case OperationKind.REMOVE_COLUMN:
            return RemoveColumn(cols[0])
        case _:
            return change_from_dict({"kind": kind.value})


_CONFIRMED: dict[OperationKind, type[TableEvent]] = {
    OperationKind.CREATE_TABLE: TableCreationConfirmed,
    OperationKind.DELETE_TABLE: TableDeletionConfirmed,
}
_REJECTED: dict[OperationKind, type[TableCreationRejected | TableDeletionRejected | TableChangeRejected]] = {
    OperationKind.CREATE_TABLE: TableCreationRejected,
    OperationKind.DELETE_TABLE: TableDeletionRejected,
}
# Kinds that leave the schema's metadata as it is when they are accepted (and, but for an adoption,
# when they are confirmed).
_KEEP_SCHEMA = frozenset(
    {OperationKind.DELETE_TABLE, OperationKind.REPAIR, OperationKind.ADOPT, OperationKind.PURGE_TRASH}
)
# Kinds that act on a trash entry: accepted while the table is deleted (but for a column's restore).
_ON_TRASH = (RestoreTable, RestoreColumn, PurgeTrash)


@dataclass(slots=True)
class TrashEntry:
    """A table or column in the trash: its data kept in the physical table ``trash``."""

    trash_id: str  # the id of the operation that trashed it
    kind: str  # "table" or "column"
    trash: str
    table: str  # the table's name when it was trashed
    column: dict[str, Any] | None = None  # the removed column, as it was
    key: list[dict[str, Any]] = field(default_factory=list)  # the columns its values are keyed by
    retention_s: int = 0
    status: str = "trashed"  # "trashed", "restored" or "purged"

    def to_dict(self) -> dict[str, Any]:
        return {
            "trash_id": self.trash_id,
            "kind": self.kind,
            "trash": self.trash,
            "table": self.table,
            "column": self.column,
            "key": list(self.key),
            "retention_s": self.retention_s,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrashEntry:
        return cls(**data)


@dataclass(slots=True)
class _IntendedFold:
    """The intended schema's fold, kept from one event to the next (the schema is asked for after every
    event, and an operation's confirmation needs its result again): ``results[i]`` is the schema after
    ``changes[:i + 1]`` were applied to ``base`` (``fits[i]``: False when ``changes[i]`` was skipped: it
    keeps the schema, or it no longer fits). Changes and schemas are immutable values, so a prefix whose
    objects are the same gives the same results."""

    base: TableSchema
    changes: list[Change] = field(default_factory=list)
    results: list[TableSchema] = field(default_factory=list)
    fits: list[bool] = field(default_factory=list)


@dataclass(slots=True)
class Table:
    table_id: UUID
    # The intended name (a rename in flight included); the physical one is confirmed.name.
    name: str = ""
    database: str = ""
    # The physical schema as confirmed by finished sagas (name "" until the table is created).
    confirmed: TableSchema = field(default_factory=lambda: TableSchema(""))
    exists: bool = False
    creation_rejected: bool = False
    deletion_confirmed: bool = False
    pending: list[PendingOperation] = field(default_factory=list)
    # The differences the last drift scan reported (empty: none, or repaired/adopted since).
    drift: list[dict[str, Any]] = field(default_factory=list)
    # What its deletion and column removals put in the trash, oldest first (restored and purged kept).
    trash: list[TrashEntry] = field(default_factory=list)
    # The operations that completed, in the order they did, as much of each as an undo needs.
    done: list[DoneOperation] = field(default_factory=list)
    # Version of the last event folded in (-1: no events).
    version: int = -1
    # Events decided but not yet saved.
    changes: list[TableEvent] = field(default_factory=list)
    # What ``schema`` computed last (a cache: no part of the state).
    _intended: _IntendedFold | None = field(default=None, init=False, repr=False, compare=False)
    # The trash entries whose status (as :meth:`trash_status` gives it) the events folded into this
    # object may have changed: the ones the read model's projection writes (no part of the state). The
    # trash keeps every entry, so writing them all made each change of a table cost more with every
    # column it had removed.
    trash_changed: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    # -- queries ---------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return not self.pending

    @property
    def created(self) -> bool:
        return self.version >= 0 or bool(self.changes)

    @property
    def schema(self) -> TableSchema:
        """The intended schema: confirmed plus the changes in flight, in acceptance order. A change whose
        premise is gone (a change ahead of it was rejected) is left out: its saga will reject it."""
        if not self.pending:
            return self.confirmed
        fold = self._fold_intended()
        return fold.results[-1]

    def _fold_intended(self) -> _IntendedFold:
        """The fold of the pending changes over the confirmed schema, from the last one where it still
        holds: after an event the pending changes are mostly those of the last fold, one more at the end or
        the head's gone (its confirmation made the confirmed schema the fold's first result)."""
        base, pending = self.confirmed, self.pending
        fold = self._intended
        if fold is None:
            fold = self._intended = _IntendedFold(base)
        elif fold.base is not base:
            if fold.results and fold.results[0] is base:  # the head confirmed as the fold applied it
                del fold.changes[0], fold.results[0], fold.fits[0]
                fold.base = base
            else:
                fold.base, fold.changes, fold.results, fold.fits = base, [], [], []
        kept = 0
        for op, change in zip(pending, fold.changes, strict=False):
            if op.change is not change:
                break
            kept += 1
        if kept < len(fold.changes):
            del fold.changes[kept:], fold.results[kept:], fold.fits[kept:]
        schema = fold.results[-1] if fold.results else base
        for op in pending[kept:]:
            fits = False
            if op.kind not in _KEEP_SCHEMA:
                try:
                    schema = op.change.apply(schema)
                    fits = True
                except DomainError:
                    pass
            fold.changes.append(op.change)
            fold.results.append(schema)
            fold.fits.append(fits)
        return fold

    @property
    def columns(self) -> dict[str, Column]:
        """The intended columns, in the order they were added."""
        return {c.name: c for c in self.schema.columns}

    @property
    def confirmed_columns(self) -> dict[str, Column]:
        return {c.name: c for c in self.confirmed.columns}

    @property
    def physical_name(self) -> str:
        """The name the table has in its database now (or will have, once its creation runs)."""
        if self.confirmed.name:
            return self.confirmed.name
        for op in self.pending:
            if isinstance(op.change, CreateTable):
                return op.change.schema.name
        return self.name

    @property
    def live(self) -> bool:
        """Whether the table is (or is about to be) a table users can change."""
        return self.holds_name and not any(op.kind is OperationKind.DELETE_TABLE for op in self.pending)

    @property
    def holds_name(self) -> bool:
        """Whether no other table of its database may take its name. A table being deleted still
        holds it: its deletion may be rejected, and until it is confirmed the physical table is there
        (a new table of that name would find it and take it for its own)."""
        if any(op.kind is OperationKind.RESTORE_TABLE for op in self.pending):
            return True  # a restore takes the name back (refused when another table holds it)
        return not (self.creation_rejected or self.deletion_confirmed)

    @property
    def trashed(self) -> bool:
        """Deleted, with its rows in the trash (restorable)."""
        return self.deletion_confirmed and any(
            e.kind == "table" and e.status == "trashed" for e in self.trash
        )

    def trash_entry(self, trash_id: str) -> TrashEntry | None:
        return next((e for e in self.trash if e.trash_id == trash_id), None)

    def trash_status(self, entry: TrashEntry) -> str:
        """The entry's status, "restoring" or "purging" while an operation on it is in flight."""
        for op in self.pending:
            if isinstance(op.change, _ON_TRASH) and op.change.trash_id == entry.trash_id:
                return "purging" if isinstance(op.change, PurgeTrash) else "restoring"
        return entry.status

    @property
    def head(self) -> PendingOperation | None:
        """The operation whose saga runs now; the others wait their turn."""
        return self.pending[0] if self.pending else None

    def operation(self, operation_id: UUID) -> PendingOperation | None:
        for op in self.pending:  # a loop, not next() over a generator: asked for by most events
            if op.operation_id == operation_id:
                return op
        return None

    def preview(self, change: Change) -> tuple[TableSchema, TableSchema]:
        """The intended schema before and after ``change``, which must fit it (nothing is recorded)."""
        self._ensure_live()
        before = self.schema
        if isinstance(change, AddColumn) and self.confirmed.column_named(change.column.name) is not None:
            # A removal still in flight may be rejected and keep the column: wait for its outcome.
            if before.column_named(change.column.name) is None:
                raise ColumnExists(
                    f"column {change.column.name!r} of {self.name!r} is being removed; add it again once "
                    "the removal is confirmed"
                )
        return before, change.apply(before)

    def premise(self, op: PendingOperation) -> TableSchema:
        """The schema after the running operation ``op``, applied to the confirmed schema; raises the
        domain error that makes it impossible now (a change ahead of it was rejected). Removing what a
        rejected change never made is done already: the schema stays as it is."""
        if op.kind in _KEEP_SCHEMA:
            return self.confirmed
        fold = self._intended
        if fold is not None and fold.base is self.confirmed and fold.changes and fold.changes[0] is op.change:
            if fold.fits[0]:  # the head, as the intended schema applied it
                return fold.results[0]
        try:
            return op.change.apply(self.confirmed)
        except (ColumnNotFound, IndexNotFound):
            if isinstance(op.change, RemoveColumn | DropIndex):
                return self.confirmed
            raise

    def undo(self, operation_id: UUID) -> Change:
        """The change that undoes completed operation ``operation_id`` (nothing is recorded); a domain
        error when it cannot be undone now (see ``domain.undo``)."""
        in_flight = [InFlight(op.operation_id, op.change, op.undoes) for op in self.pending]
        return undo_change(operation_id, done=self.done, in_flight=in_flight)

    def undone_by(self, operation_id: UUID) -> UUID | None:
        """The completed operation that undid ``operation_id``, if one did."""
        return next((d.operation_id for d in self.done if d.undoes == operation_id), None)

    # -- commands --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        table_id: UUID,
        name: str,
        database: str,
        operation_id: UUID,
        columns: tuple[Column, ...] = (),
        indexes: tuple[Index, ...] = (),
        plan: Plan | None = None,
    ) -> Table:
        """A new table: the four default columns, then ``columns``, and ``indexes``."""
        schema = new_table_schema(name, columns, indexes)
        table = cls(table_id=table_id)
        table._record(
            TableCreated(
                table_id=table_id,
                operation_id=operation_id,
                name=name,
                database=database,
                columns=[c.to_dict() for c in schema.columns],
                indexes=[i.to_dict() for i in schema.indexes],
                plan=plan.to_dict() if plan is not None else None,
            )
        )
        return table

    @classmethod
    def track(cls, *, table_id: UUID, schema: TableSchema, database: str, operation_id: UUID) -> Table:
        """An existing table taken under management as it is: its live schema is the metadata."""
        check_name(schema.name, kind="table")
        table = cls(table_id=table_id)
        table._record(
            TableTracked(
                table_id=table_id,
                operation_id=operation_id,
                name=schema.name,
                database=database,
                columns=[c.to_dict() for c in schema.columns],
                indexes=[i.to_dict() for i in schema.indexes],
            )
        )
        return table

    def accept(
        self, change: Change, *, operation_id: UUID, plan: Plan | None = None, undoes: UUID | None = None
    ) -> None:
        """Queue ``change`` (validated against the intended schema) with the plan its saga will run;
        ``undoes``: the operation it undoes, which must be undoable now by that very change."""
        if undoes is not None and not is_the_undo(self.undo(undoes), change):
            raise IllegalTransition(f"{change.kind.value} is not the undo of operation {undoes}")
        if isinstance(change, CreateTable):
            raise IllegalTransition("a table is created by Table.create")
        if isinstance(change, Repair | Adopt) and not self.exists and not self.pending:
            self._ensure_live()
            raise TableGone(f"table {self.name!r} was never created in its database")
        if isinstance(change, _ON_TRASH):
            self._check_trash(change)
        else:
            self.preview(change)
        planned = plan.to_dict() if plan is not None else None
        undone = str(undoes) if undoes is not None else None
        event: TableEvent
        match change:
            case AddColumn(column=column):
                event = TableChanged(self.table_id, operation_id, "add", column.to_dict(), planned, undone)
            case RemoveColumn(column=column, trash=trash, key=key, retention_s=retention_s):
                event = TableChanged(
                    self.table_id,
                    operation_id,
                    "remove",
                    column.to_dict(),
                    planned,
                    undone,
                    trash=trash or None,
                    key=[c.to_dict() for c in key] if trash else None,
                    retention_s=retention_s if trash else None,
                )
            case DeleteTable(trash=trash, retention_s=retention_s):
                event = TableDeleted(
                    self.table_id,
                    operation_id,
                    planned,
                    trash=trash or None,
                    retention_s=retention_s if trash else None,
                    undoes=undone,
                )
            case Repair() | Adopt():
                event = TableReconciliationRequested(self.table_id, operation_id, change.kind.value)
            case _:
                event = TableAltered(self.table_id, operation_id, change.to_dict(), planned, undone)
        self._record(event)

    def _check_trash(self, change: RestoreTable | RestoreColumn | PurgeTrash) -> None:
        """A restore or purge fits only a trash entry still in the trash, with nothing else on it in
        flight; a table is restored only while it is deleted, a column only into a live table."""
        entry = self.trash_entry(change.trash_id)
        if entry is None:
            raise TrashNotFound(f"no trash entry {change.trash_id}")
        if entry.status != "trashed":
            raise TrashPurged(f"trash entry {change.trash_id} was {entry.status}: its data is gone")
        if self.trash_status(entry) != "trashed":
            raise IllegalTransition(f"trash entry {change.trash_id} is being {self.trash_status(entry)}")
        if isinstance(change, RestoreTable) and (not self.deletion_confirmed or self.pending):
            raise IllegalTransition(f"table {self.name!r} is not deleted: nothing to restore")
        if isinstance(change, RestoreColumn):
            self.preview(change)

    def add_column(self, column: Column, *, operation_id: UUID, plan: Plan | None = None) -> None:
        self.accept(AddColumn(check_column(column)), operation_id=operation_id, plan=plan)

    def remove_column(self, name: str, *, operation_id: UUID, plan: Plan | None = None) -> None:
        self._ensure_live()
        column = self.schema.column(name)
        if column is None:
            raise ColumnNotFound(f"table {self.name!r} has no column {name!r}")
        self.accept(RemoveColumn(column), operation_id=operation_id, plan=plan)

    def delete(self, *, operation_id: UUID, plan: Plan | None = None) -> None:
        self.accept(DeleteTable(), operation_id=operation_id, plan=plan)

    def reconcile(self, strategy: str, *, operation_id: UUID) -> None:
        """Queue a reconciliation: "repair" the physical table, or "adopt" its live schema."""
        self._ensure_live()
        changes: dict[str, Change] = {"repair": Repair(), "adopt": Adopt()}
        if strategy not in changes:
            raise IllegalTransition(f"unknown reconciliation strategy {strategy!r}; use 'repair' or 'adopt'")
        self.accept(changes[strategy], operation_id=operation_id)

    def record_drift(self, issues: list[dict[str, Any]], *, scan_id: UUID) -> bool:
        """Record what a drift scan found, if it differs from what was last recorded."""
        if issues == self.drift:
            return False
        self._record(TableDriftDetected(table_id=self.table_id, operation_id=scan_id, issues=issues))
        return True

    # -- saga progress ---------------------------------------------------------------------------

    def adopt(self, operation_id: UUID, schema: TableSchema) -> None:
        op = self._head(operation_id)
        if op.kind is not OperationKind.ADOPT:
            raise IllegalTransition(f"operation {operation_id} is not an adoption")
        self._record(
            TableSchemaAdopted(
                table_id=self.table_id,
                operation_id=operation_id,
                columns=[c.to_dict() for c in schema.columns],
                indexes=[i.to_dict() for i in schema.indexes],
            )
        )

    def complete_step(self, operation_id: UUID, step: str) -> None:
        op = self._head(operation_id)
        if step not in op.steps_done:
            self._record(SagaStepCompleted(table_id=self.table_id, operation_id=operation_id, step=step))

    def fail_attempt(
        self,
        operation_id: UUID,
        *,
        error: str,
        transient: bool,
        blocked_by: list[dict[str, Any]] | None = None,
    ) -> None:
        op = self._head(operation_id)
        self._record(
            SagaAttemptFailed(
                table_id=self.table_id,
                operation_id=operation_id,
                attempt=op.failed_attempts + 1,
                error=error,
                transient=transient,
                blocked_by=list(blocked_by or []),
            )
        )

    def start_compensation(self, operation_id: UUID, *, reason: str) -> None:
        op = self._head(operation_id)
        if not op.compensating:
            self._record(
                SagaCompensationStarted(table_id=self.table_id, operation_id=operation_id, reason=reason)
            )

    def confirm(self, operation_id: UUID) -> None:
        op = self._head(operation_id)
        if op.kind is OperationKind.ADOPT:
            raise IllegalTransition("an adoption is confirmed by the schema it adopts (use adopt)")
        if op.compensating:
            raise IllegalTransition(f"operation {operation_id} is compensating and can only be rejected")
        try:
            self.premise(op)
        except DomainError as exc:
            raise IllegalTransition(f"operation {operation_id} no longer fits the table: {exc}") from None
        self._record(
            _CONFIRMED.get(op.kind, TableChangeConfirmed)(table_id=self.table_id, operation_id=operation_id)
        )

    def reject(self, operation_id: UUID, *, reason: str) -> None:
        op = self._head(operation_id)
        self._record(
            _REJECTED.get(op.kind, TableChangeRejected)(
                table_id=self.table_id, operation_id=operation_id, reason=reason
            )
        )

    # -- folding events --------------------------------------------------------------------------

    def apply(self, event: TableEvent) -> None:
        """Fold one saved event into the state (used when loading)."""
        self._when(event)
        self.version += 1

    def _record(self, event: TableEvent) -> None:
        self._when(event)
        self.changes.append(event)

    def _when(self, event: TableEvent) -> None:
        match event:
            case TableCreated(name=name, database=database, columns=columns, indexes=indexes, plan=plan):
                self.database = database
                schema = TableSchema(
                    name,
                    tuple(Column.from_dict(c) for c in columns),
                    tuple(Index.from_dict(i) for i in indexes),
                )
                self._queue(event, CreateTable(schema), plan)
            case TableTracked(name=name, database=database, columns=columns, indexes=indexes):
                self.database = database
                self.confirmed = TableSchema(
                    name,
                    tuple(Column.from_dict(c) for c in columns),
                    tuple(Index.from_dict(i) for i in indexes),
                )
                self.exists = True
                self._keep_done(DoneOperation(event.operation_id, TRACK_TABLE, frozenset({EVERYTHING}), None))
            case TableChanged(action=action, column=column, plan=plan, undoes=undoes):
                col = Column.from_dict(column)
                if action == "add":
                    self._queue(event, AddColumn(col), plan, undoes)
                else:
                    key = tuple(Column.from_dict(c) for c in event.key or [])
                    removal = RemoveColumn(
                        col, trash=event.trash or "", key=key, retention_s=event.retention_s or 0
                    )
                    self._queue(event, removal, plan, undoes)
            case TableDeleted(plan=plan, trash=trash, retention_s=retention_s, undoes=undoes):
                self._queue(event, DeleteTable(trash=trash or "", retention_s=retention_s or 0), plan, undoes)
            case TableAltered(change=change, plan=plan, undoes=undoes):
                self._queue(event, change_from_dict(change), plan, undoes)
            case TableReconciliationRequested(strategy=strategy):
                self._queue(event, change_from_dict({"kind": strategy}), None)
            case TableDriftDetected(issues=issues):
                self.drift = list(issues)
            case TableSchemaAdopted(columns=columns, indexes=indexes):
                self._remember(self._finish(event), self.confirmed)
                self.confirmed = TableSchema(
                    self.confirmed.name or self.name,
                    tuple(Column.from_dict(c) for c in columns),
                    tuple(Index.from_dict(i) for i in indexes),
                )
                self.exists = True
                self.drift = []
            case SagaStepCompleted(step=step):
                self._pending_op(event).steps_done.append(step)
            case SagaAttemptFailed():
                self._pending_op(event).failed_attempts += 1
            case SagaCompensationStarted(reason=reason):
                op = self._pending_op(event)
                op.compensating, op.compensation_reason = True, reason
            case TableCreationConfirmed():
                op = self._finish(event)
                self._remember(op, self.confirmed)
                self.confirmed = self.premise(op)
                self.exists = True
            case TableChangeConfirmed():
                op = self._finish(event)
                self._confirm_trash(op)
                self._remember(op, self.confirmed)
                if op.kind is OperationKind.REPAIR:  # the physical table was brought back to the metadata
                    self.drift = []
                else:
                    self.confirmed = self.premise(op)
                if op.kind is OperationKind.RESTORE_TABLE:
                    self.exists, self.deletion_confirmed = True, False
            case TableDeletionConfirmed():
                op = self._finish(event)
                self._confirm_trash(op)
                self._remember(op, self.confirmed)
                self.exists = False
                self.deletion_confirmed = True
            case TableCreationRejected():
                self._finish(event)
                self.exists = False
                self.creation_rejected = True
            case TableChangeRejected() | TableDeletionRejected():
                # The physical schema did not change: confirmed state stays as it was (a rejected
                # removal keeps its column, a rejected deletion keeps the table).
                self._finish(event)
            case _:
                raise IllegalTransition(f"unknown event {type(event).__name__}")
        self.name = self.schema.name or self.name

    def _confirm_trash(self, op: PendingOperation) -> None:
        """What a confirmed operation put in the trash, or took out of it (read before ``confirmed``
        moves on: an entry names the table as it was)."""
        if isinstance(op.change, DeleteTable | RemoveColumn) and op.change.trash:
            self.trash_changed.add(str(op.operation_id))
        match op.change:
            case DeleteTable(trash=trash, retention_s=retention_s) if trash:
                entry = TrashEntry(str(op.operation_id), "table", trash, self.confirmed.name)
                entry.retention_s = retention_s
                self.trash.append(entry)
            case RemoveColumn(column=column, trash=trash, key=key, retention_s=retention_s) if trash:
                self.trash.append(
                    TrashEntry(
                        str(op.operation_id),
                        "column",
                        trash,
                        self.confirmed.name,
                        column.to_dict(),
                        [c.to_dict() for c in key],
                        retention_s,
                    )
                )
            case RestoreTable(trash_id=trash_id) | RestoreColumn(trash_id=trash_id):
                restored = self.trash_entry(trash_id)
                if restored is not None:
                    restored.status = "restored"
            case PurgeTrash(trash_id=trash_id):
                purged = self.trash_entry(trash_id)
                if purged is not None:
                    purged.status = "purged"

    def _queue(
        self, event: TableEvent, change: Change, plan: dict[str, Any] | None, undoes: str | None = None
    ) -> None:
        if isinstance(change, _ON_TRASH):
            self.trash_changed.add(change.trash_id)  # restoring or purging now
        self.pending.append(
            PendingOperation(
                event.operation_id,
                change,
                Plan.from_dict(plan) if plan is not None else None,
                undoes=UUID(undoes) if undoes is not None else None,
            )
        )

    def _remember(self, op: PendingOperation, before: TableSchema) -> None:
        """Keep what an undo of ``op``, which completed on schema ``before``, will need."""
        undo: Change | None = None
        match op.change:
            case DeleteTable(trash=trash) if trash:  # restored from the trash, under its name
                undo = RestoreTable(str(op.operation_id), trash, before.name)
            case RemoveColumn(column=column, trash=trash, key=key) if trash:
                undo = RestoreColumn(str(op.operation_id), trash, column, column.name, key)
            case _ if op.kind.value not in NEEDS_TRASH:
                try:
                    undo = inverse(op.change, before)
                except (UnsupportedChange, ColumnNotFound):
                    undo = None  # a reconciliation, a restore or a purge: no inverse
        self._keep_done(DoneOperation(op.operation_id, op.kind.value, touches(op.change), undo, op.undoes))

    def _keep_done(self, done: DoneOperation) -> None:
        """A completed operation, for undo: the newest UNDO_REACH are kept (domain.undo)."""
        self.done.append(done)
        if len(self.done) > UNDO_REACH:
            del self.done[: len(self.done) - UNDO_REACH]

    def _pending_op(self, event: TableEvent) -> PendingOperation:
        op = self.operation(event.operation_id)
        if op is None:
            raise IllegalTransition(
                f"event {type(event).__name__} for unknown operation {event.operation_id}"
            )
        return op

    def _finish(self, event: TableEvent) -> PendingOperation:
        op = self._pending_op(event)
        self.pending.remove(op)
        if isinstance(op.change, _ON_TRASH):
            self.trash_changed.add(op.change.trash_id)  # restored, purged, or back in the trash
        return op

    def _head(self, operation_id: UUID) -> PendingOperation:
        head = self.head
        if head is None or head.operation_id != operation_id:
            raise IllegalTransition(
                f"operation {operation_id} is not the one running on table {self.table_id}"
            )
        return head

    def _ensure_live(self) -> None:
        if not self.live:
            raise TableGone(f"table {self.name!r} ({self.table_id}) has been deleted")

    # -- snapshots -------------------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "table_id": str(self.table_id),
            "name": self.name,
            "database": self.database,
            "confirmed_name": self.confirmed.name,
            "confirmed_columns": [c.to_dict() for c in self.confirmed.columns],
            "confirmed_indexes": [i.to_dict() for i in self.confirmed.indexes],
            "exists": self.exists,
            "creation_rejected": self.creation_rejected,
            "deletion_confirmed": self.deletion_confirmed,
            "pending": [op.to_dict() for op in self.pending],
            "drift": list(self.drift),
            "trash": [e.to_dict() for e in self.trash],
            "done": [d.to_dict() for d in self.done],
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], *, version: int) -> Table:
        name = data["name"]
        columns = tuple(Column.from_dict(c) for c in data["confirmed_columns"])
        # Snapshots taken before confirmed_name: the table had no rename, and a name once it had columns.
        confirmed_name = data.get("confirmed_name", name if columns else "")
        return cls(
            table_id=UUID(data["table_id"]),
            name=name,
            database=data["database"],
            confirmed=TableSchema(
                confirmed_name, columns, tuple(Index.from_dict(i) for i in data.get("confirmed_indexes", []))
            ),
            exists=data["exists"],
            creation_rejected=data["creation_rejected"],
            deletion_confirmed=data["deletion_confirmed"],
            pending=[PendingOperation.from_dict(op, table_name=name) for op in data["pending"]],
            drift=list(data.get("drift", [])),
            trash=[TrashEntry.from_dict(e) for e in data.get("trash", [])],
            # Snapshots taken before undo's reach was bounded may hold more: the newest, as a replay keeps.
            done=[DoneOperation.from_dict(d) for d in data.get("done", [])[-UNDO_REACH:]],
            version=version,
        )

    def state_equals(self, other: Table) -> bool:
        """Same state, ignoring unsaved changes, which no snapshot holds (used to check snapshots against
        replay)."""
        return self.to_snapshot() == other.to_snapshot() and self.version == other.version


def new_table_schema(
    name: str, columns: tuple[Column, ...] = (), indexes: tuple[Index, ...] = ()
) -> TableSchema:
    """The schema of a new table: the four default columns, then ``columns``, then ``indexes``; each
    checked as the change that would add it is."""
    check_name(name, kind="table")
    schema = TableSchema(name, DEFAULT_COLUMNS)
    for column in columns:
        schema = AddColumn(check_column(column)).apply(schema)
    for index in indexes:
        schema = AddIndex(index).apply(schema)
    return schema
