"""The Table aggregate: decides which events a command produces and folds events into state.

State distinguishes what is *confirmed* (the physical schema as last reported by a finished saga)
from what is *intended* (confirmed plus the changes still in flight, in acceptance order). Commands
are validated against the intended state, so a change that conflicts with a pending one is refused
at once; the demo's ``columns`` shows the intended state and ``synced`` says whether it is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from schemasaga.domain.columns import DEFAULT_COLUMNS, IDENTIFIER, Column
from schemasaga.domain.errors import (
    ColumnExists,
    ColumnNotFound,
    IllegalTransition,
    InvalidName,
    PrimaryKeyColumn,
    TableGone,
)
from schemasaga.domain.events import (
    SagaAttemptFailed,
    SagaCompensationStarted,
    SagaStepCompleted,
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
)


class OperationKind(StrEnum):
    CREATE_TABLE = "create_table"
    ADD_COLUMN = "add_column"
    REMOVE_COLUMN = "remove_column"
    DELETE_TABLE = "delete_table"
    REPAIR = "repair"
    ADOPT = "adopt"


@dataclass(slots=True)
class PendingOperation:
    """A change accepted but not finished: its saga's progress so far."""

    operation_id: UUID
    kind: OperationKind
    columns: tuple[Column, ...]
    steps_done: list[str] = field(default_factory=list)
    failed_attempts: int = 0
    compensating: bool = False
    compensation_reason: str | None = None

    @property
    def column(self) -> Column:
        return self.columns[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation_id": str(self.operation_id),
            "kind": self.kind.value,
            "columns": [c.to_dict() for c in self.columns],
            "steps_done": list(self.steps_done),
            "failed_attempts": self.failed_attempts,
            "compensating": self.compensating,
            "compensation_reason": self.compensation_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingOperation:
        return cls(
            operation_id=UUID(data["operation_id"]),
            kind=OperationKind(data["kind"]),
            columns=tuple(Column.from_dict(c) for c in data["columns"]),
            steps_done=list(data["steps_done"]),
            failed_attempts=int(data["failed_attempts"]),
            compensating=bool(data["compensating"]),
            compensation_reason=data["compensation_reason"],
        )


_CONFIRMED = {
    OperationKind.CREATE_TABLE: TableCreationConfirmed,
    OperationKind.ADD_COLUMN: TableChangeConfirmed,
    OperationKind.REMOVE_COLUMN: TableChangeConfirmed,
    OperationKind.DELETE_TABLE: TableDeletionConfirmed,
    OperationKind.REPAIR: TableChangeConfirmed,
}
_REJECTED = {
    OperationKind.CREATE_TABLE: TableCreationRejected,
    OperationKind.ADD_COLUMN: TableChangeRejected,
    OperationKind.REMOVE_COLUMN: TableChangeRejected,
    OperationKind.DELETE_TABLE: TableDeletionRejected,
    OperationKind.REPAIR: TableChangeRejected,
    OperationKind.ADOPT: TableChangeRejected,
}


@dataclass(slots=True)
class Table:
    table_id: UUID
    name: str = ""
    database: str = ""
    # The physical schema as confirmed by finished sagas.
    confirmed_columns: dict[str, Column] = field(default_factory=dict)
    exists: bool = False
    creation_rejected: bool = False
    deletion_confirmed: bool = False
    pending: list[PendingOperation] = field(default_factory=list)
    # The differences the last drift scan reported (empty: none, or repaired/adopted since).
    drift: list[dict[str, Any]] = field(default_factory=list)
    # Version of the last event folded in (-1: no events).
    version: int = -1
    # Events decided but not yet saved.
    changes: list[TableEvent] = field(default_factory=list)

    # -- queries ---------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return not self.pending

    @property
    def created(self) -> bool:
        return self.version >= 0 or bool(self.changes)

    @property
    def columns(self) -> dict[str, Column]:
        """The intended columns: confirmed plus pending changes, in acceptance order."""
        cols = dict(self.confirmed_columns)
        for op in self.pending:
            if op.kind is OperationKind.CREATE_TABLE:
                cols = {c.name: c for c in op.columns}
            elif op.kind is OperationKind.ADD_COLUMN:
                cols[op.column.name] = op.column
            elif op.kind is OperationKind.REMOVE_COLUMN:
                cols.pop(op.column.name, None)
        return cols

    @property
    def live(self) -> bool:
        """Whether the table is (or is about to be) a table users can change."""
        return self.holds_name and not any(op.kind is OperationKind.DELETE_TABLE for op in self.pending)

    @property
    def holds_name(self) -> bool:
        """Whether no other table of its database may take its name. A table being deleted still
        holds it: its deletion may be rejected, and until it is confirmed the physical table is there
        (a new table of that name would find it and take it for its own)."""
        return not (self.creation_rejected or self.deletion_confirmed)

    @property
    def head(self) -> PendingOperation | None:
        """The operation whose saga runs now; the others wait their turn."""
        return self.pending[0] if self.pending else None

    def operation(self, operation_id: UUID) -> PendingOperation | None:
        return next((op for op in self.pending if op.operation_id == operation_id), None)

    # -- commands --------------------------------------------------------------------------------

    @classmethod
    def create(cls, *, table_id: UUID, name: str, database: str, operation_id: UUID) -> Table:
        if not name or not IDENTIFIER.fullmatch(name):
            raise InvalidName(
                f"table name {name!r} must start with a letter or underscore and contain only "
                "letters, digits and underscores"
            )
        table = cls(table_id=table_id)
        table._record(
            TableCreated(
                table_id=table_id,
                operation_id=operation_id,
                name=name,
                database=database,
                columns=[c.to_dict() for c in DEFAULT_COLUMNS],
            )
        )
        return table

    def add_column(self, column: Column, *, operation_id: UUID) -> None:
        self._ensure_live()
        if not IDENTIFIER.fullmatch(column.name):
            raise InvalidName(f"column name {column.name!r} is not a valid identifier")
        if column.name.lower() in (n.lower() for n in self.columns):
            raise ColumnExists(f"column {column.name!r} already exists (or is being added) in {self.name!r}")
        # A removal still in flight may be rejected and keep the column: wait for its outcome.
        if column.name.lower() in (n.lower() for n in self.confirmed_columns):
            raise ColumnExists(
                f"column {column.name!r} of {self.name!r} is being removed; add it again once the removal "
                "is confirmed"
            )
        if column.primary_key:
            raise PrimaryKeyColumn("a new column cannot be a primary key")
        self._record(
            TableChanged(
                table_id=self.table_id, operation_id=operation_id, action="add", column=column.to_dict()
            )
        )

    def remove_column(self, name: str, *, operation_id: UUID) -> None:
        self._ensure_live()
        column = self.columns.get(name)
        if column is None:
            raise ColumnNotFound(f"table {self.name!r} has no column {name!r}")
        if column.primary_key:
            raise PrimaryKeyColumn(f"column {name!r} is the primary key and cannot be removed")
        self._record(
            TableChanged(
                table_id=self.table_id, operation_id=operation_id, action="remove", column=column.to_dict()
            )
        )

    def delete(self, *, operation_id: UUID) -> None:
        self._ensure_live()
        self._record(TableDeleted(table_id=self.table_id, operation_id=operation_id))

    def reconcile(self, strategy: str, *, operation_id: UUID) -> None:
        """Queue a reconciliation: "repair" the physical table, or "adopt" its live schema."""
        self._ensure_live()
        if strategy not in ("repair", "adopt"):
            raise IllegalTransition(f"unknown reconciliation strategy {strategy!r}; use 'repair' or 'adopt'")
        if not self.exists and not self.pending:
            raise TableGone(f"table {self.name!r} was never created in its database")
        self._record(
            TableReconciliationRequested(table_id=self.table_id, operation_id=operation_id, strategy=strategy)
        )

    def record_drift(self, issues: list[dict[str, Any]], *, scan_id: UUID) -> bool:
        """Record what a drift scan found, if it differs from what was last recorded."""
        if issues == self.drift:
            return False
        self._record(TableDriftDetected(table_id=self.table_id, operation_id=scan_id, issues=issues))
        return True

    # -- saga progress ---------------------------------------------------------------------------

    def adopt(self, operation_id: UUID, columns: list[Column]) -> None:
        op = self._head(operation_id)
        if op.kind is not OperationKind.ADOPT:
            raise IllegalTransition(f"operation {operation_id} is not an adoption")
        self._record(
            TableSchemaAdopted(
                table_id=self.table_id, operation_id=operation_id, columns=[c.to_dict() for c in columns]
            )
        )

    def complete_step(self, operation_id: UUID, step: str) -> None:
        op = self._head(operation_id)
        if step not in op.steps_done:
            self._record(SagaStepCompleted(table_id=self.table_id, operation_id=operation_id, step=step))

    def fail_attempt(self, operation_id: UUID, *, error: str, transient: bool) -> None:
        op = self._head(operation_id)
        self._record(
            SagaAttemptFailed(
                table_id=self.table_id,
                operation_id=operation_id,
                attempt=op.failed_attempts + 1,
                error=error,
                transient=transient,
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
        self._record(_CONFIRMED[op.kind](table_id=self.table_id, operation_id=operation_id))

    def reject(self, operation_id: UUID, *, reason: str) -> None:
        op = self._head(operation_id)
        self._record(_REJECTED[op.kind](table_id=self.table_id, operation_id=operation_id, reason=reason))

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
            case TableCreated(name=name, database=database, columns=columns):
                self.name, self.database = name, database
                self.pending.append(
                    PendingOperation(
                        event.operation_id,
                        OperationKind.CREATE_TABLE,
                        tuple(Column.from_dict(c) for c in columns),
                    )
                )
            case TableChanged(action=action, column=column):
                kind = OperationKind.ADD_COLUMN if action == "add" else OperationKind.REMOVE_COLUMN
                self.pending.append(PendingOperation(event.operation_id, kind, (Column.from_dict(column),)))
            case TableDeleted():
                self.pending.append(PendingOperation(event.operation_id, OperationKind.DELETE_TABLE, ()))
            case TableReconciliationRequested(strategy=strategy):
                self.pending.append(PendingOperation(event.operation_id, OperationKind(strategy), ()))
            case TableDriftDetected(issues=issues):
                self.drift = list(issues)
            case TableSchemaAdopted(columns=columns):
                self._finish(event)
                self.confirmed_columns = {c["name"]: Column.from_dict(c) for c in columns}
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
                self.confirmed_columns = {c.name: c for c in op.columns}
                self.exists = True
            case TableChangeConfirmed():
                op = self._finish(event)
                if op.kind is OperationKind.ADD_COLUMN:
                    self.confirmed_columns[op.column.name] = op.column
                elif op.kind is OperationKind.REMOVE_COLUMN:
                    self.confirmed_columns.pop(op.column.name, None)
                else:  # a repair brought the physical table back to the metadata
                    self.drift = []
            case TableDeletionConfirmed():
                self._finish(event)
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
            "confirmed_columns": [c.to_dict() for c in self.confirmed_columns.values()],
            "exists": self.exists,
            "creation_rejected": self.creation_rejected,
            "deletion_confirmed": self.deletion_confirmed,
            "pending": [op.to_dict() for op in self.pending],
            "drift": list(self.drift),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], *, version: int) -> Table:
        return cls(
            table_id=UUID(data["table_id"]),
            name=data["name"],
            database=data["database"],
            confirmed_columns={c["name"]: Column.from_dict(c) for c in data["confirmed_columns"]},
            exists=data["exists"],
            creation_rejected=data["creation_rejected"],
            deletion_confirmed=data["deletion_confirmed"],
            pending=[PendingOperation.from_dict(op) for op in data["pending"]],
            drift=list(data.get("drift", [])),
            version=version,
        )

    def state_equals(self, other: Table) -> bool:
        """Same state, ignoring unsaved changes, which no snapshot holds (used to check snapshots against
        replay)."""
        return self.to_snapshot() == other.to_snapshot() and self.version == other.version
