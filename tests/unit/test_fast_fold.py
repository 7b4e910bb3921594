"""The online rebuild's fast fold (``readmodels.fast_table_rows``: lean events, the saga's bookkeeping
folded into the operations' rows only) gives exactly the rows of the reference fold
(``readmodels.table_rows``: every event built whole and applied to the aggregate), on histories that
mix every kind of event: failed attempts with blocked sessions, compensation, rejections, removals into
the trash and their undo, drift, repair and adopt reconciliations, a deletion into the trash restored,
a purge, a tracked table, and operations still in flight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from schemasaga.coredb.readmodels import fast_table_rows, table_rows
from schemasaga.domain.changes import DeleteTable, PurgeTrash, RemoveColumn
from schemasaga.domain.columns import Column, ColumnType, TableSchema
from schemasaga.domain.table import Table
from schemasaga.eventstore import LeanEvent, RecordedEvent, lean_events
from schemasaga.eventstore.jsoncodec import dumps
from schemasaga.eventstore.upcasting import Upcasters

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AGE = Column("age", ColumnType.INTEGER)
NOTE = Column("note", ColumnType.TEXT)


def _run(table: Table, op: UUID, *, steps: tuple[str, ...] = ("ddl",)) -> None:
    for step in steps:
        table.complete_step(op, step)
    table.confirm(op)


def busy_history() -> Table:
    """A table through everything the read models follow (its ``changes`` are the events)."""
    op = uuid4()
    table = Table.create(table_id=uuid4(), name="busy", database="main", operation_id=op)
    table.fail_attempt(op, error="lock timeout", transient=True, blocked_by=[{"session": 7, "query": "x"}])
    _run(table, op, steps=("create_table",))
    age = uuid4()
    table.add_column(AGE, operation_id=age)
    table.fail_attempt(age, error="first", transient=True)
    table.fail_attempt(age, error="second", transient=True)
    _run(table, age, steps=("add_column", "backfill"))
    note = uuid4()
    table.add_column(NOTE, operation_id=note)
    table.start_compensation(note, reason="the view depends on it")
    table.reject(note, reason="compensated")
    # A removal into the trash, then its undo (a restore of the column from the trash).
    removal = uuid4()
    key = (Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),)
    removal_change = RemoveColumn(AGE, trash="ss_trash_age", key=key, retention_s=3600)
    table.accept(removal_change, operation_id=removal)
    _run(table, removal)
    restore = uuid4()
    table.accept(table.undo(removal), operation_id=restore, undoes=removal)
    table.complete_step(restore, "restore_column")
    _run(table, restore, steps=())
    # Drift, repaired; drift again, adopted.
    table.record_drift([{"kind": "missing_column", "column": "age"}], scan_id=uuid4())
    repair = uuid4()
    table.reconcile("repair", operation_id=repair)
    _run(table, repair)
    table.record_drift([{"kind": "extra_column", "column": "zz"}], scan_id=uuid4())
    adopt = uuid4()
    table.reconcile("adopt", operation_id=adopt)
    table.complete_step(adopt, "inspect")
    live = TableSchema(table.name, (*table.confirmed.columns, Column("zz", ColumnType.TEXT)), ())
    table.adopt(adopt, live)
    # A second removal into the trash, purged.
    gone = uuid4()
    table.accept(
        RemoveColumn(
            NOTE if table.schema.column("note") else Column("zz", ColumnType.TEXT),
            trash="ss_trash_zz",
            key=key,
            retention_s=60,
        ),
        operation_id=gone,
    )
    _run(table, gone)
    purge = uuid4()
    table.accept(PurgeTrash(str(gone), "ss_trash_zz"), operation_id=purge)
    table.complete_step(purge, "purge")  # in flight: its entry reads "purging"
    _run(table, purge, steps=())
    # Deleted into the trash, the deletion undone (restored), then a change left in flight.
    deletion = uuid4()
    table.accept(DeleteTable(trash="ss_trash_busy", retention_s=600), operation_id=deletion)
    _run(table, deletion)
    back = uuid4()
    table.accept(table.undo(deletion), operation_id=back, undoes=deletion)
    table.complete_step(back, "rename")
    table.confirm(back)
    later = uuid4()
    table.add_column(Column("later", ColumnType.TEXT), operation_id=later)
    table.complete_step(later, "add_column")
    return table


def other_histories() -> list[Table]:
    rejected = Table.create(table_id=uuid4(), name="never", database="main", operation_id=(op := uuid4()))
    rejected.fail_attempt(op, error="no space", transient=False)
    rejected.reject(op, reason="no space")
    schema = TableSchema("found", (Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),), ())
    tracked = Table.track(table_id=uuid4(), schema=schema, database="files", operation_id=uuid4())
    tracked.delete(operation_id=(op := uuid4()))
    _run(tracked, op)
    trashed = Table.create(table_id=uuid4(), name="binned", database="main", operation_id=(op := uuid4()))
    _run(trashed, op)
    trashed.accept(DeleteTable(trash="ss_trash_binned", retention_s=60), operation_id=(op := uuid4()))
    _run(trashed, op)
    pending = Table.create(table_id=uuid4(), name="slow", database="main", operation_id=(op := uuid4()))
    pending.fail_attempt(op, error="timeout", transient=True)
    return [rejected, tracked, trashed, pending]


def _stored(data: dict[str, Any]) -> dict[str, Any]:
    """An attempt's failure without sessions blocking it as events recorded before ``blocked_by`` were
    (the field left out: both folds take its default)."""
    if data.get("blocked_by") == []:
        return {k: v for k, v in data.items() if k != "blocked_by"}
    return data


def as_read(table: Table, first_position: int) -> tuple[list[RecordedEvent], list[LeanEvent]]:
    """The table's events as the store reads them: whole (the reference) and lean (the fast fold)."""
    stream = f"Table${table.table_id}"
    recorded = [
        RecordedEvent(
            uuid4(),
            e.type_name(),
            _stored(e.to_data()),
            {},
            1,
            first_position + v,
            T0 + timedelta(seconds=first_position + v),
            None,
            stream,
            v,
        )
        for v, e in enumerate(table.changes)
    ]
    rows = [(r.stream, r.event_type, 1, dumps(r.data), r.created_at, r.position) for r in recorded]
    return recorded, lean_events(rows, Upcasters())


def test_the_fast_fold_gives_the_reference_rows_on_mixed_histories() -> None:
    busy = busy_history()
    types = {type(e).__name__ for e in busy.changes}
    assert {
        "SagaAttemptFailed",
        "SagaCompensationStarted",
        "TableChangeRejected",
        "TableDriftDetected",
        "TableReconciliationRequested",
        "TableSchemaAdopted",
        "TableDeletionConfirmed",
    } <= types
    position = 1
    uuids: dict[str, UUID] = {}  # shared across streams, as in a batch
    for table in [busy, *other_histories()]:
        recorded, lean = as_read(table, position)
        position += len(recorded)
        reference = table_rows(recorded)
        fast = fast_table_rows(lean, uuids)
        assert fast == reference, table.name
    # The busy table's rows say what the history did (the comparison is not between two empty answers).
    row, ops, trash = table_rows(as_read(busy, 1)[0])
    assert row[2] == "busy" and row[3] is False  # a change in flight: not synced
    statuses = sorted(op[3] for op in ops)
    assert statuses.count("rejected") == 1 and statuses.count("pending") == 1
    assert sorted(t[7] for t in trash) == ["purged", "restored", "restored"]
    assert any(op[13] is not None for op in ops)  # an operation undone by another


def test_lean_reads_upcast_only_the_types_an_upcaster_is_registered_for() -> None:
    """lean_events skips its per-event upcaster check when no type read has one: a batch with one such
    event among others still has it (and only it) upcast."""
    upcasters = Upcasters()
    upcasters.register("SagaStepCompleted", 1, lambda data: {**data, "step": data["step"].upper()})
    table = Table.create(table_id=uuid4(), name="up", database="main", operation_id=(op := uuid4()))
    _run(table, op, steps=("create_table",))
    recorded, _ = as_read(table, 1)
    rows = [(r.stream, r.event_type, 1, dumps(r.data), r.created_at, r.position) for r in recorded]
    lean = lean_events(rows, upcasters)
    assert [e[2].get("step") for e in lean] == [None, "CREATE_TABLE", None]
    assert [e[2] for e in lean_events(rows, Upcasters())] == [r.data for r in recorded]
