"""Undo: which completed operation of a table can be taken back, and by which change.

The Table aggregate remembers each completed operation as a :class:`DoneOperation`: its kind, what it
touched (columns, indexes, the table's name), and the change that takes it back, computed when it
completed from the schema it found (:func:`schemasaga.domain.changes.inverse`). An undo asks for that
change as a new operation, whose events name the operation it undoes; an undo of an undo redoes.

:func:`undo_change` decides, in this order:

1. an operation still in flight, or rejected (or unknown to the table): :class:`OperationNotCompleted`;
   once the table has completed more than :data:`UNDO_REACH` operations, one that is not among the last
   :data:`UNDO_REACH` of them: :class:`UndoUnsupported`;
2. one undone already, or with an undo in flight: :class:`AlreadyUndone`, naming the undo;
3. a created table, a deleted table, a removed column: :func:`trash_inverse`, the one place where the
   trash plugs in (trash the table; restore the table or the column with its rows); refused with
   :class:`UndoUnsupported` when the data was not kept in the trash;
4. a reconciliation or a tracking, which have no inverse: :class:`UndoUnsupported`;
5. one that a later operation of the table depends on (it touches one of the same columns, indexes or
   the table's name, and is not cancelled by undos of its own): :class:`UndoConflict`, naming the latest
   such operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from schemasaga.domain.changes import (
    AddColumn,
    AddIndex,
    Adopt,
    AlterColumn,
    Change,
    CreateTable,
    DeleteTable,
    DropIndex,
    PurgeTrash,
    RemoveColumn,
    RenameTable,
    Repair,
    RestoreColumn,
    RestoreTable,
    change_from_dict,
)
from schemasaga.domain.errors import AlreadyUndone, OperationNotCompleted, UndoConflict, UndoUnsupported

# How far back an undo reaches: a table remembers this many completed operations (the newest), in its
# state and its snapshots. Every load of a table (each command, each saga) decodes what it remembers,
# so an unbounded memory made a table edited for years slower to change with every change (1,000
# completed operations: 246 KiB of snapshot and 18 ms to decode them at each load).
UNDO_REACH = 100

EVERYTHING = "*"
"""What a creation, a deletion or an adoption touches: every part of the table."""

TRACK_TABLE = "track_table"
"""The kind of a tracking (Table.track), which is no change: nothing ran."""

# The kinds whose undo needs the trash: what they drop, or what their inverse would drop, holds rows.
NEEDS_TRASH = frozenset({"create_table", "delete_table", "remove_column"})


def touches(change: Change) -> frozenset[str]:
    """The parts of the table ``change`` reads or writes, as ``column:<name>``, ``index:<name>`` and
    ``table`` (its name); lower case, as names are unique case-insensitively."""
    match change:
        case AddColumn(column=column) | RemoveColumn(column=column) | RestoreColumn(column=column):
            return frozenset({_column(column.name)})
        case PurgeTrash():
            return frozenset()  # the trash only: the table stays as it is
        case AlterColumn(name=name, column=column):
            return frozenset({_column(name), _column(column.name)})
        case RenameTable():
            return frozenset({"table"})
        case AddIndex(index=index) | DropIndex(index=index):
            return frozenset({f"index:{index.name.lower()}", *(_column(c) for c in index.columns)})
        case Repair():
            return frozenset()  # the physical table brought back to the metadata, which stays as it is
        case CreateTable() | DeleteTable() | Adopt() | RestoreTable():
            return frozenset({EVERYTHING})
    return frozenset({EVERYTHING})  # pragma: no cover - a change kind added later: depend on everything


def _column(name: str) -> str:
    return f"column:{name.lower()}"


def overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    return bool(a & b) or (EVERYTHING in a and bool(b)) or (EVERYTHING in b and bool(a))


@dataclass(frozen=True, slots=True)
class DoneOperation:
    """A completed operation of a table, as much of it as an undo needs."""

    operation_id: UUID
    kind: str
    touches: frozenset[str]
    # The change that takes it back (None: it needs the trash, or it has none).
    inverse: Change | None
    # The operation it undid, when it was an undo.
    undoes: UUID | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation_id": str(self.operation_id),
            "kind": self.kind,
            "touches": sorted(self.touches),
            "inverse": self.inverse.to_dict() if self.inverse is not None else None,
            "undoes": str(self.undoes) if self.undoes is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DoneOperation:
        inverse = data.get("inverse")
        undoes = data.get("undoes")
        return cls(
            operation_id=UUID(data["operation_id"]),
            kind=data["kind"],
            touches=frozenset(data["touches"]),
            inverse=change_from_dict(inverse) if inverse is not None else None,
            undoes=UUID(undoes) if undoes is not None else None,
        )


@dataclass(frozen=True, slots=True)
class InFlight:
    """An operation accepted and not finished, as the undo rules see it."""

    operation_id: UUID
    change: Change
    undoes: UUID | None


def undo_change(target: UUID, *, done: Sequence[DoneOperation], in_flight: Sequence[InFlight]) -> Change:
    """The change that undoes operation ``target`` of a table whose completed operations are ``done``
    (in the order they completed) and whose operations in flight are ``in_flight``; a domain error
    when it cannot be undone (see the module's docstring for the rules, in order)."""
    if any(op.operation_id == target for op in in_flight):
        raise OperationNotCompleted(
            f"operation {target} has not completed yet: undo it once it has",
            details={"operation_id": str(target)},
        )
    position = next((i for i, d in enumerate(done) if d.operation_id == target), None)
    if position is None and len(done) >= UNDO_REACH:
        raise UndoUnsupported(
            f"operation {target} is not among the last {UNDO_REACH} completed operations of its table, "
            "the ones an undo reaches (or it did not complete)",
            details={"undo_reach": UNDO_REACH},
        )
    if position is None:
        raise OperationNotCompleted(
            f"operation {target} did not complete (it was rejected): there is nothing to undo",
            details={"operation_id": str(target)},
        )
    entry = done[position]
    # What came after it, in order: completed first, then in flight (they run in acceptance order).
    later = [(d.operation_id, d.touches, d.undoes) for d in done[position + 1 :]] + [
        (op.operation_id, touches(op.change), op.undoes) for op in in_flight
    ]
    undone_by = {undoes: op for op, _, undoes in later if undoes is not None}
    if target in undone_by:
        raise AlreadyUndone(
            f"operation {target} is undone already by operation {undone_by[target]}; "
            "undo that one to redo it",
            details={"undone_by": str(undone_by[target])},
        )
    if entry.kind in NEEDS_TRASH:
        inverse = trash_inverse(entry)
    elif entry.inverse is None:
        raise UndoUnsupported(f"a {entry.kind} operation has no inverse: it cannot be undone")
    else:
        inverse = entry.inverse
    undoes_of = {op: undoes for op, _, undoes in later}
    for op, parts, _ in reversed(later):
        if overlap(parts, entry.touches) and not _cancelled(op, undoes_of, undone_by):
            raise UndoConflict(
                f"operation {op}, later on the same table, depends on what undoing operation {target} "
                f"would take back ({', '.join(sorted(parts & entry.touches) or parts)}); undo it first",
                details={"operation_id": str(op)},
            )
    return inverse


def _cancelled(op: UUID, undoes_of: dict[UUID, UUID | None], undone_by: dict[UUID, UUID]) -> bool:
    """Whether ``op`` is one of a chain of later operations that leaves nothing: an operation and its undo,
    or an operation, its undo, its redo and the redo's undo..."""
    root = op
    while (previous := undoes_of.get(root)) is not None and previous in undoes_of:
        root = previous
    if undoes_of.get(root) is not None:  # an undo of an operation from before the one being undone
        return False
    length, current = 1, root
    while current in undone_by:
        current = undone_by[current]
        length += 1
    return length % 2 == 0


def is_the_undo(expected: Change, change: Change) -> bool:
    """Whether ``change`` is the undo ``expected``, or ``expected`` keeping what it drops in the trash (a
    deletion or a column removal: the trash's name, key and retention are the service's to choose)."""
    match expected, change:
        case DeleteTable(), DeleteTable():
            return replace(change, trash="", retention_s=0) == expected
        case RemoveColumn(), RemoveColumn():
            return replace(change, trash="", key=(), retention_s=0) == expected
    return change == expected


def trash_inverse(entry: DoneOperation) -> Change:
    """The undo of an operation whose inverse needs the trash: a created table is trashed, a deleted table
    or a removed column is restored from the trash with its rows. The trash plugs in here (returning
    the change that trashes or restores). A deletion or removal that kept its data in the trash is undone
    by restoring it (``entry.inverse``, set when it completed); a creation by deleting the table, which
    the service sends to the trash. Otherwise (data dropped at once) the undo is refused, and nothing is
    written: re-adding a removed column or table without its rows would not give them back."""
    if entry.inverse is not None:
        return entry.inverse
    if entry.kind == "create_table":
        # The service names the trash table and its retention, as for any deletion.
        return DeleteTable()
    what = {
        "delete_table": "undoing a table's deletion restores the table from the trash",
        "remove_column": "undoing a column's removal restores the column and its values from the trash",
    }[entry.kind]
    raise UndoUnsupported(
        f"operation {entry.operation_id} cannot be undone: {what} (it needs the trash), and its data was "
        "not kept there (the trash was off, or the table has no primary key)",
        details={"needs": "trash", "kind": entry.kind},
    )
