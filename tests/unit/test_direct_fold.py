"""The online rebuild's direct fold (``coredb.directfold``: the common histories folded into rows without
the aggregate) gives exactly the rows of the reference fold (``readmodels.table_rows``: every event built
whole and applied to the aggregate), on random histories made by the aggregate's own commands: creations
with and without plans, additions (names that collide, in any letter case), steps, failed attempts,
compensations, confirmations and rejections, undos, and now and then a removal or a deletion (which
the direct fold leaves to the aggregate)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemasaga.coredb import directfold
from schemasaga.coredb.readmodels import table_rows
from schemasaga.domain.columns import Column, ColumnType
from schemasaga.domain.errors import DomainError
from schemasaga.domain.plan import Plan, Statement
from schemasaga.domain.table import Table
from tests.unit.test_fast_fold import as_read

NAMES = ("age", "Age", "note", "size", "id")
TYPES = (ColumnType.INTEGER, ColumnType.TEXT, ColumnType.JSON)
PLAN = Plan("postgresql", (Statement('ALTER TABLE "t" ADD COLUMN "x" integer', "ACCESS EXCLUSIVE"),))

command = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(NAMES), st.sampled_from(TYPES), st.booleans(), st.booleans()),
    st.tuples(st.just("step"), st.sampled_from(("ddl", "backfill"))),
    st.tuples(st.just("fail"), st.booleans()),
    st.tuples(st.just("compensate")),
    st.tuples(st.just("confirm")),
    st.tuples(st.just("confirm")),
    st.tuples(st.just("reject")),
    st.tuples(st.just("undo"), st.integers(0, 5)),
    st.tuples(st.just("remove"), st.sampled_from(NAMES)),
    st.tuples(st.just("delete")),
)


def _history(columns: list[tuple[str, ColumnType]], planned: bool, commands: list[tuple[Any, ...]]) -> Table:
    """A table made by the commands (those the aggregate refuses are skipped, as a caller's would be)."""
    table = Table.create(
        table_id=uuid4(),
        name="t",
        database="main",
        operation_id=uuid4(),
        # "id" is one of the default columns; names are unique regardless of case.
        columns=tuple({n.lower(): Column(n, t) for n, t in columns if n != "id"}.values()),
        plan=PLAN if planned else None,
    )
    done: list[UUID] = []
    for cmd in commands:
        head = table.head
        try:
            match cmd:
                case ("add", name, type_, nullable, with_plan):
                    column = Column(name, type_, nullable=nullable)
                    table.add_column(column, operation_id=uuid4(), plan=PLAN if with_plan else None)
                case ("step", step) if head:
                    table.complete_step(head.operation_id, step)
                case ("fail", transient) if head:
                    blocked = [{"session": 7, "query": "x"}] if transient else []
                    table.fail_attempt(head.operation_id, error="e", transient=transient, blocked_by=blocked)
                case ("compensate",) if head:
                    table.start_compensation(head.operation_id, reason="r")
                case ("confirm",) if head:
                    table.confirm(head.operation_id)
                    done.append(head.operation_id)
                case ("reject",) if head:
                    table.reject(head.operation_id, reason="no")
                case ("undo", k) if done:
                    undone = done[k % len(done)]
                    table.accept(table.undo(undone), operation_id=uuid4(), undoes=undone)
                case ("remove", name):
                    table.remove_column(name, operation_id=uuid4())
                case ("delete",):
                    table.delete(operation_id=uuid4())
        except DomainError:
            pass
    return table


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(TYPES)), max_size=2),
    st.booleans(),
    st.lists(command, max_size=40),
)
def test_the_direct_fold_gives_the_reference_rows(
    columns: list[tuple[str, ColumnType]], planned: bool, commands: list[tuple[Any, ...]]
) -> None:
    table = _history(columns, planned, commands)
    recorded, lean = as_read(table, 1)
    assert directfold.table_rows(lean, {}) == table_rows(recorded)


def test_the_common_histories_are_folded_directly() -> None:
    """The rows above come from the direct fold itself for the histories it restates (not from its
    fallback to the aggregate), whatever their outcome."""
    commands: list[tuple[Any, ...]] = [
        ("step", "ddl"),
        ("add", "age", ColumnType.INTEGER, True, True),
        ("add", "AGE", ColumnType.TEXT, True, False),  # refused: the name is taken in another case
        ("confirm",),
        ("fail", True),
        ("compensate",),
        ("reject",),
        ("add", "note", ColumnType.TEXT, False, False),
        ("add", "size", ColumnType.JSON, True, False),
        ("step", "ddl"),
        ("confirm",),
        ("remove", "note"),  # not these histories: left to the aggregate
    ]
    table = _history([("id", ColumnType.INTEGER)], True, commands[:-1])
    recorded, lean = as_read(table, 1)
    row, ops, _ = directfold._direct(lean, {})
    assert (row, ops, []) == table_rows(recorded)
    assert row[2] == "t" and row[3] is False  # "size" in flight
    assert sorted(op[3] for op in ops) == ["completed", "completed", "pending", "rejected"]
    rejected = Table.create(table_id=uuid4(), name="r", database="main", operation_id=(op := uuid4()))
    rejected.add_column(Column("later", ColumnType.TEXT), operation_id=uuid4())  # accepted in flight
    rejected.reject(op, reason="no space")
    recorded, lean = as_read(rejected, 1)
    row, ops, _ = directfold._direct(lean, {})
    assert (row, ops, []) == table_rows(recorded)
    assert row[5] is True and row[11] is False  # deleted, and its name is free
    table = _history([], False, commands)
    with pytest.raises(directfold._Unsupported):
        directfold._direct(as_read(table, 1)[1], {})
