"""The Table's events. Past tense, frozen, serializable to plain JSON-able dicts.

The first nine are the demo's; the saga events record each change's progress in the same stream,
so a restarted worker resumes where the last one stopped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID


@dataclass(frozen=True, slots=True)
class TableEvent:
    table_id: UUID
    operation_id: UUID

    # Payload schema version; bump it and register an upcaster when a payload's shape changes.
    SCHEMA_VERSION: ClassVar[int] = 1
    # Fields left out of the payload while they are None (added later: events without them keep the shape
    # they always had, and load with the default).
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OMITTED_WHEN_NONE:
                continue
            data[f.name] = str(value) if isinstance(value, UUID) else value
        return data


@dataclass(frozen=True, slots=True)
class TableCreated(TableEvent):
    name: str
    database: str
    columns: list[dict[str, Any]]
    indexes: list[dict[str, Any]] = field(default_factory=list)
    # The plan the saga runs (domain.plan.Plan as a dict); None in events recorded before plans.
    plan: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TableCreationConfirmed(TableEvent):
    pass


@dataclass(frozen=True, slots=True)
class TableCreationRejected(TableEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class TableChanged(TableEvent):
    # "add" with the new column, or "remove" with the column as it was.
    action: str
    column: dict[str, Any]
    plan: dict[str, Any] | None = None
    # The id of the operation this change undoes (POST /v1/operations/{id}/undo); None (and not in the
    # payload) for a change asked for as such.
    undoes: str | None = None
    # A removal that keeps the values: the trash table, its key columns, how long it is kept (None, and
    # not in the payload, when the values are dropped with the column).
    trash: str | None = None
    key: list[dict[str, Any]] | None = None
    retention_s: int | None = None

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"undoes", "trash", "key", "retention_s"})


@dataclass(frozen=True, slots=True)
class TableChangeConfirmed(TableEvent):
    pass


@dataclass(frozen=True, slots=True)
class TableChangeRejected(TableEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class TableDeleted(TableEvent):
    plan: dict[str, Any] | None = None
    # The trash name the table is renamed to and how long it is kept there (None, and not in the payload:
    # dropped at once).
    trash: str | None = None
    retention_s: int | None = None
    undoes: str | None = None  # as in TableChanged (the undo of a table's creation)

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"trash", "retention_s", "undoes"})


@dataclass(frozen=True, slots=True)
class TableAltered(TableEvent):
    """A change other than the demo's (a rename, a column's alteration, an index): ``change`` is the
    domain.changes value as a dict, ``plan`` the statements its saga runs."""

    change: dict[str, Any]
    plan: dict[str, Any] | None = None
    undoes: str | None = None  # as in TableChanged

    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"undoes"})


@dataclass(frozen=True, slots=True)
class TableTracked(TableEvent):
    """An existing table taken under management as it is (no DDL): its live schema becomes the metadata."""

    name: str
    database: str
    columns: list[dict[str, Any]]
    indexes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TableDeletionConfirmed(TableEvent):
    pass


@dataclass(frozen=True, slots=True)
class TableDeletionRejected(TableEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class SagaStepCompleted(TableEvent):
    step: str


@dataclass(frozen=True, slots=True)
class SagaAttemptFailed(TableEvent):
    attempt: int
    error: str
    transient: bool
    # When the step timed out waiting for a lock: the sessions that held it (session, query, held_for_s).
    blocked_by: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SagaCompensationStarted(TableEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class TableReconciliationRequested(TableEvent):
    # "repair": bring the physical table back to the metadata; "adopt": take the live schema as metadata.
    strategy: str


@dataclass(frozen=True, slots=True)
class TableSchemaAdopted(TableEvent):
    """Confirms an "adopt" reconciliation: the live columns and indexes become the table's metadata."""

    columns: list[dict[str, Any]]
    indexes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TableDriftDetected(TableEvent):
    """A drift scan found the physical table differing from its metadata (operation_id: the scan's id)."""

    issues: list[dict[str, Any]]


EVENT_TYPES: dict[str, type[TableEvent]] = {
    cls.__name__: cls
    for cls in (
        TableCreated,
        TableCreationConfirmed,
        TableCreationRejected,
        TableChanged,
        TableChangeConfirmed,
        TableChangeRejected,
        TableDeleted,
        TableDeletionConfirmed,
        TableDeletionRejected,
        TableAltered,
        TableTracked,
        SagaStepCompleted,
        SagaAttemptFailed,
        SagaCompensationStarted,
        TableReconciliationRequested,
        TableSchemaAdopted,
        TableDriftDetected,
    )
}


def event_from_data(event_type: str, data: dict[str, Any]) -> TableEvent:
    cls = EVENT_TYPES[event_type]
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data and (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        ):
            continue  # a field added since the event was recorded: its default
        value = data[f.name]
        kwargs[f.name] = UUID(value) if f.name in ("table_id", "operation_id") else value
    return cls(**kwargs)


def stream_name(table_id: UUID) -> str:
    return f"Table${table_id}"
