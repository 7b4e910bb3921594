"""The steps of each saga. Every action and compensation is idempotent: it inspects the live schema
first, so a step re-run after a crash (at-least-once delivery) changes nothing the second time.

Each verification asks the one schema diff (:func:`schemasaga.domain.schema.diff`) whether the live
table now is what the metadata will say once the step is confirmed, looking at what the step changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace

from schemasaga.byodb.errors import PermanentByodbError, TableThere
from schemasaga.domain.changes import (
    AddColumn,
    AlterColumn,
    DeleteTable,
    PurgeTrash,
    RemoveColumn,
    RestoreColumn,
    RestoreTable,
    inverse,
)
from schemasaga.domain.columns import Column, TableSchema
from schemasaga.domain.schema import Difference, DifferenceKind, LiveTable, describe, diff
from schemasaga.domain.table import OperationKind, PendingOperation, Table
from schemasaga.services.ports import SchemaAdapter

Action = Callable[[SchemaAdapter, Table, PendingOperation], None]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    action: Action
    compensation: Action | None = None
    # The step makes the table: on the operation's first start this action runs instead, which refuses
    # a table already there (whatever its shape), with the same inspection that precedes its DDL.
    first_action: Action | None = None
    # A verification: it only reads, has nothing to undo, and runs in the same call to the database's
    # threads as the step before it, its completion recorded with that step's (one core transaction
    # less; a crash before that record runs both again, each idempotent).
    check: bool = False


class VerificationFailed(PermanentByodbError):
    """The live schema does not show what the step should have produced."""


# The schema a creation just found its table to have: ``create_table`` compares the table it made (read
# back after its DDL) or found (same shape) with the schema, and raises on any difference. The
# verification that follows in the same call to the database's threads (``Step.check``) takes that
# comparison instead of inspecting the table again (one connection checkout and catalog query less).
# Each call to the threads runs in a copy of the caller's context: a verification run alone (a resumed
# saga) finds nothing here and inspects.
_CREATED_AS: ContextVar[TableSchema | None] = ContextVar("schemasaga_created_as", default=None)


def _create(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    schema = table.premise(op)
    adapter.create_table(schema.name, schema.columns, schema.indexes)
    _CREATED_AS.set(schema)


def _drop_table(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    adapter.drop_table(table.physical_name)


def _delete_table(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Move the table to the trash (rename it), or drop it when its deletion keeps nothing."""
    assert isinstance(op.change, DeleteTable)
    if op.change.trash:
        adapter.rename_table(table.physical_name, op.change.trash)
    else:
        adapter.drop_table(table.physical_name)


def _untrash_table(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Compensation of a deletion: a trashed table gets its name back (a dropped one cannot)."""
    assert isinstance(op.change, DeleteTable)
    if op.change.trash:
        adapter.rename_table(op.change.trash, table.physical_name)


def _verify_deleted(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    _verify_table_gone(adapter, table, op)
    assert isinstance(op.change, DeleteTable)
    if op.change.trash and adapter.inspect_table(op.change.trash) is None:
        raise VerificationFailed(f"table {table.physical_name!r} is not in the trash ({op.change.trash!r})")


def _restore_table(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    assert isinstance(op.change, RestoreTable)
    adapter.rename_table(op.change.trash, op.change.name)


def _retrash_table(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    assert isinstance(op.change, RestoreTable)
    adapter.rename_table(op.change.name, op.change.trash)


def _purge(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    assert isinstance(op.change, PurgeTrash | RestoreColumn)
    adapter.drop_table(op.change.trash)


def _verify_purged(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    assert isinstance(op.change, PurgeTrash)
    if adapter.inspect_table(op.change.trash) is not None:
        raise VerificationFailed(f"trash table {op.change.trash!r} still exists")


def _copy_to_trash(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Before a column is dropped, its values go to the trash keyed by the primary key (inspect-first:
    a column dropped already was copied by the run that dropped it)."""
    assert isinstance(op.change, RemoveColumn)
    if op.change.trash:
        adapter.copy_to_trash(table.physical_name, op.column.name, op.change.key, op.change.trash)


def _drop_trash(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    assert isinstance(op.change, RemoveColumn)
    if op.change.trash:
        adapter.drop_table(op.change.trash)


def _relaxed(column: Column) -> Column:
    """The column as it is added back before it is filled: nullable and not unique (rows added since it
    was removed have no value for it), its default kept."""
    return replace(column, nullable=True, unique=False)


def _add_restored(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    adapter.add_column(table.physical_name, _relaxed(op.column))


def _fill_restored(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    assert isinstance(op.change, RestoreColumn)
    change = op.change
    adapter.fill_from_trash(table.physical_name, change.column.name, change.source, change.key, change.trash)


def _constrain_restored(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Give the filled column back its nullability and uniqueness, with the planned alteration (which
    checks the rows first: a row added since the removal refuses NOT NULL, and the restore is undone)."""
    column = op.column
    if _relaxed(column) == column:
        return
    before = AddColumn(_relaxed(column)).apply(table.confirmed)
    after = table.premise(op)
    alteration = AlterColumn(column.name, column)
    adapter.apply_plan(before, after, adapter.plan_change(before, after, alteration), change=alteration)


def _create_new(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """The creation's first run: refuse to create a table that exists before any run of the operation
    could have made it: it appeared after the creation was accepted (or the database could not be looked
    at then)."""
    schema = table.premise(op)
    try:
        adapter.create_table(schema.name, schema.columns, schema.indexes, refuse_existing=True)
    except TableThere as there:
        raise PermanentByodbError(
            f"a table {there.found!r} appeared in the database before schemasaga created {schema.name!r}; "
            "it is left as it is: track it (POST /v1/tables/track) to manage it",
            engine=adapter.engine,
        ) from None
    _CREATED_AS.set(schema)


def _add(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    adapter.add_column(table.physical_name, op.column)


def _drop_column(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    adapter.drop_column(table.physical_name, op.column.name)


def _differences(
    adapter: SchemaAdapter, table: Table, expected: Sequence[Column], *, about: str | None = None
) -> tuple[LiveTable | None, list[Difference]]:
    """The live table and how it differs from ``expected`` (only what concerns column ``about``)."""
    live = adapter.inspect_table(table.physical_name)
    differences = diff(expected, live, table=table.physical_name)
    if about is not None and live is not None:
        differences = [d for d in differences if d.concerns(about, fold_case=live.fold_case)]
    return live, differences


def _verify_created(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    schema = table.premise(op)
    created_as, _ = _CREATED_AS.get(), _CREATED_AS.set(None)
    if created_as == schema:
        return  # the creation's own read-back, in this call, found it so
    differences = diff(schema, adapter.inspect_table(schema.name))
    if differences:
        raise VerificationFailed(f"table {schema.name!r} is not as created: {describe(differences)}")


def _verify_added(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    expected = [*table.confirmed_columns.values(), op.column]
    _, differences = _differences(adapter, table, expected, about=op.column.name)
    if differences:
        raise VerificationFailed(
            f"column {op.column.name!r} of {table.physical_name!r} is not as added: {describe(differences)}"
        )


def _verify_dropped(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    expected = [c for c in table.confirmed_columns.values() if c.name != op.column.name]
    _, differences = _differences(adapter, table, expected, about=op.column.name)
    if differences:
        raise VerificationFailed(
            f"column {op.column.name!r} is still in {table.physical_name!r}: {describe(differences)}"
        )


def _verify_table_gone(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    live = adapter.inspect_table(table.physical_name)
    if live is not None and adapter.is_table(live, table.physical_name):
        raise VerificationFailed(f"table {table.physical_name!r} still exists")


# What a repair can fix without risking data: add what is missing, drop what is extra.
_REPAIRABLE = frozenset(
    {DifferenceKind.MISSING_TABLE, DifferenceKind.MISSING_COLUMN, DifferenceKind.EXTRA_COLUMN}
)


def _repair(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Bring the physical table back to the confirmed metadata: create it if it is missing, add
    missing columns, drop extra ones. A column of another type, nullability or key cannot be
    changed without risking its data: that is refused (adopt the live schema instead)."""
    confirmed = table.confirmed
    live = adapter.inspect_table(confirmed.name)
    differences = diff(confirmed, live)
    unrepairable = [d for d in differences if d.kind not in _REPAIRABLE]
    if unrepairable:
        raise PermanentByodbError(
            f"cannot repair without risking data: {describe(unrepairable)} "
            "(use the 'adopt' strategy to take the live schema as metadata)"
        )
    if live is None:
        adapter.create_table(confirmed.name, confirmed.columns, confirmed.indexes)
        return
    for difference in differences:
        assert difference.column is not None  # column kinds only, past the checks above
        if difference.kind is DifferenceKind.MISSING_COLUMN:
            adapter.add_column(table.physical_name, table.confirmed_columns[difference.column])
        else:
            adapter.drop_column(table.physical_name, difference.column)


def _verify_repaired(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    differences = diff(table.confirmed, adapter.inspect_table(table.confirmed.name))
    if differences:
        raise VerificationFailed(
            f"table {table.physical_name!r} still differs from its metadata: {describe(differences)}"
        )


def _alter(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Run the change's plan: exactly the statements planned when it was accepted."""
    if op.plan is None:
        raise PermanentByodbError(f"operation {op.operation_id} has no plan to run")
    adapter.apply_plan(table.confirmed, table.premise(op), op.plan)


def _unalter(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    """Take the table back to its confirmed schema with the inverse change's plan (inspect-first: a
    change that never ran is found as it was, and nothing runs)."""
    before, after = table.confirmed, table.premise(op)
    undo = inverse(op.change, before)
    adapter.apply_plan(after, before, adapter.plan_change(after, before, undo))


def _verify_altered(adapter: SchemaAdapter, table: Table, op: PendingOperation) -> None:
    after = table.premise(op)
    differences = diff(after, adapter.inspect_table(after.name))
    if differences:
        raise VerificationFailed(
            f"table {after.name!r} is not as {op.kind.value} should leave it: {describe(differences)}"
        )


ALTER_STEPS = (Step("alter", _alter, _unalter), Step("verify", _verify_altered, check=True))
"""The saga of every change that runs a plan through ``apply_plan`` (renames, alterations, indexes)."""


SAGAS: dict[OperationKind, tuple[Step, ...]] = {
    OperationKind.RENAME_TABLE: ALTER_STEPS,
    OperationKind.ALTER_COLUMN: ALTER_STEPS,
    OperationKind.ADD_INDEX: ALTER_STEPS,
    OperationKind.DROP_INDEX: ALTER_STEPS,
    OperationKind.CREATE_TABLE: (
        Step("create_table", _create, _drop_table, first_action=_create_new),
        Step("verify", _verify_created, check=True),
    ),
    OperationKind.ADD_COLUMN: (
        Step("add_column", _add, _drop_column),
        Step("verify", _verify_added, check=True),
    ),
    # A dropped column's data cannot come back, so dropping has no compensation; a failure before
    # it leaves the column (and the metadata keeps it).
    # A removal that keeps the column's values copies them to the trash first (undone by dropping the
    # copy); the drop itself has no compensation.
    OperationKind.REMOVE_COLUMN: (
        Step("copy_to_trash", _copy_to_trash, _drop_trash),
        Step("drop_column", _drop_column),
        Step("verify", _verify_dropped, check=True),
    ),
    # A deletion renames the table into the trash (undone by renaming it back), or drops it.
    OperationKind.DELETE_TABLE: (
        Step("drop_table", _delete_table, _untrash_table),
        Step("verify", _verify_deleted, check=True),
    ),
    OperationKind.RESTORE_TABLE: (
        Step("restore_table", _restore_table, _retrash_table),
        Step("verify", _verify_altered, check=True),
    ),
    OperationKind.RESTORE_COLUMN: (
        Step("add_column", _add_restored, _drop_column),
        Step("fill", _fill_restored),
        Step("constrain", _constrain_restored),
        Step("verify", _verify_added, check=True),
        # the trash table is dropped once the column is back: the last step, so nothing undoes it
        Step("discard_trash", _purge),
    ),
    OperationKind.PURGE_TRASH: (
        Step("purge", _purge),
        Step("verify", _verify_purged, check=True),
    ),
    # Extra columns dropped by a repair lose their data: a repair is an explicit request to do so.
    OperationKind.REPAIR: (
        Step("repair", _repair),
        Step("verify", _verify_repaired, check=True),
    ),
    # Adopting has no DDL: the runner inspects the live table and records it (TableSchemaAdopted).
    OperationKind.ADOPT: (),
}
