"""The steps of each saga. Every action and compensation is idempotent: it inspects the live schema
first, so a step re-run after a crash (at-least-once delivery) changes nothing the second time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from schemasaga.byodb.adapter import ByodbAdapter, LiveTable
from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.domain.columns import Column
from schemasaga.domain.table import OperationKind, PendingOperation, Table

Action = Callable[[ByodbAdapter, Table, PendingOperation], None]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    action: Action
    compensation: Action | None = None


class VerificationFailed(PermanentByodbError):
    """The live schema does not show what the step should have produced."""


def _create(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    adapter.create_table(table.name, op.columns)


def _drop_created(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    adapter.drop_table(table.name)


def _add(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    adapter.add_column(table.name, op.column)


def _drop_added(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    adapter.drop_column(table.name, op.column.name)


def _drop_column(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    adapter.drop_column(table.name, op.column.name)


def _drop_table(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    adapter.drop_table(table.name)


def _live(adapter: ByodbAdapter, table: Table) -> LiveTable:
    live = adapter.inspect_table(table.name)
    if live is None:
        raise VerificationFailed(f"table {table.name!r} is missing from the database")
    return live


def _matches(live_columns: Mapping[str, tuple[object, bool, bool]], column: Column) -> bool:
    found = live_columns.get(column.name.lower())
    return found is not None and found == (column.type, column.nullable, column.primary_key)


def _verify_created(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    live = _live(adapter, table)
    cols = {c.name.lower(): (c.type, c.nullable, c.primary_key) for c in live.columns}
    wrong = [c.name for c in op.columns if not _matches(cols, c)]
    if wrong or len(cols) != len(op.columns):
        raise VerificationFailed(
            f"table {table.name!r} does not have the expected columns after creation "
            f"(differs in: {', '.join(wrong) or 'extra columns'})"
        )


def _verify_added(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    live = _live(adapter, table)
    cols = {c.name.lower(): (c.type, c.nullable, c.primary_key) for c in live.columns}
    if not _matches(cols, op.column):
        raise VerificationFailed(f"column {op.column.name!r} of {table.name!r} is not as added")


def _verify_dropped(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    live = _live(adapter, table)
    if any(adapter.same_name(c.name, op.column.name, kind="column") for c in live.columns):
        raise VerificationFailed(f"column {op.column.name!r} is still in {table.name!r}")


def _verify_table_gone(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    live = adapter.inspect_table(table.name)
    if live is not None and adapter.same_name(live.name, table.name, kind="table"):
        raise VerificationFailed(f"table {table.name!r} still exists")


def _repair(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    """Bring the physical table back to the confirmed metadata: create it if it is missing, add
    missing columns, drop extra ones. A column of another type, nullability or key cannot be
    changed without risking its data: that is refused (adopt the live schema instead)."""
    from schemasaga.drift import compare

    confirmed = list(table.confirmed_columns.values())
    live = adapter.inspect_table(table.name)
    if live is None:
        adapter.create_table(table.name, confirmed)
        return
    issues = compare(confirmed, live)
    unrepairable = [i for i in issues if i["issue"] not in ("missing_column", "extra_column")]
    if unrepairable:
        raise PermanentByodbError(
            "cannot repair without risking data: "
            + "; ".join(f"{i['column']}: {i['issue']}" for i in unrepairable)
            + " (use the 'adopt' strategy to take the live schema as metadata)"
        )
    for issue in issues:
        if issue["issue"] == "missing_column":
            adapter.add_column(table.name, table.confirmed_columns[issue["column"]])
        else:
            adapter.drop_column(table.name, issue["column"])


def _verify_repaired(adapter: ByodbAdapter, table: Table, op: PendingOperation) -> None:
    from schemasaga.drift import compare

    issues = compare(table.confirmed_columns.values(), adapter.inspect_table(table.name))
    if issues:
        raise VerificationFailed(f"table {table.name!r} still differs from its metadata: {issues}")


SAGAS: dict[OperationKind, tuple[Step, ...]] = {
    OperationKind.CREATE_TABLE: (
        Step("create_table", _create, _drop_created),
        Step("verify", _verify_created),
    ),
    OperationKind.ADD_COLUMN: (
        Step("add_column", _add, _drop_added),
        Step("verify", _verify_added),
    ),
    # A dropped column's data cannot come back, so dropping has no compensation; a failure before
    # it leaves the column (and the metadata keeps it).
    OperationKind.REMOVE_COLUMN: (
        Step("drop_column", _drop_column),
        Step("verify", _verify_dropped),
    ),
    OperationKind.DELETE_TABLE: (
        Step("drop_table", _drop_table),
        Step("verify", _verify_table_gone),
    ),
    # Extra columns dropped by a repair lose their data: a repair is an explicit request to do so.
    OperationKind.REPAIR: (
        Step("repair", _repair),
        Step("verify", _verify_repaired),
    ),
    # Adopting has no DDL: the runner inspects the live table and records it (TableSchemaAdopted).
    OperationKind.ADOPT: (),
}
