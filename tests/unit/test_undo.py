"""Undo on the in-memory ports (tests/fakes.py): which change undoes which operation, and the rules that
refuse one (in flight or rejected, undone already, needs the trash, a later operation depends on it),
each writing nothing."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from schemasaga.domain import table as table_module
from schemasaga.domain import undo as undo_module
from schemasaga.domain.changes import (
    AddColumn,
    AddIndex,
    AlterColumn,
    Change,
    DeleteTable,
    DropIndex,
    RemoveColumn,
    RenameTable,
)
from schemasaga.domain.columns import Column, ColumnType, Index
from schemasaga.domain.errors import (
    AlreadyUndone,
    DomainError,
    IllegalTransition,
    OperationNotCompleted,
    UndoConflict,
    UndoUnsupported,
)
from schemasaga.domain.events import TableAltered, TableChanged, event_from_data, stream_name
from schemasaga.domain.table import Table
from schemasaga.domain.undo import UNDO_REACH
from schemasaga.services.tables import Accepted, Asked, ColumnPatch, Planned, only_accepted
from schemasaga.services.unit_of_work import Session
from tests.unit.test_services import World

AGE = Column("age", ColumnType.INTEGER)
NOTE = Column("note", ColumnType.TEXT)


async def _done(world: World, accepted: Accepted | Planned) -> Accepted:
    """Run the accepted operation's saga to its end (it must complete)."""
    accepted = only_accepted(accepted)
    await world.run(accepted)
    table = await world.table(accepted.table_id)
    assert table.synced and any(d.operation_id == accepted.operation_id for d in table.done)
    return accepted


async def _undo(world: World, accepted: Accepted, **kwargs: object) -> Accepted | Planned:
    return await world.tables.undo(
        table_id=accepted.table_id, operation_id=accepted.operation_id, metadata={"actor": "test"}, **kwargs
    )


async def _settled_with_age() -> tuple[World, Accepted]:
    world = World()
    created = await world.settled()
    await _done(world, await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={}))
    return world, created


def _refused_writing_nothing(world: World, table_id: UUID) -> tuple[list[str], int]:
    return world.events(table_id), len(world.core.jobs)


async def test_each_invertible_change_is_undone_by_its_inverse_which_names_it() -> None:
    world, created = await _settled_with_age()
    t = created.table_id
    tables = world.tables
    cases = [
        (lambda: tables.rename_table(table_id=t, name="persons", metadata={}), RenameTable("people")),
        (
            lambda: tables.alter_column(
                table_id=t, name="age", patch=ColumnPatch(type=ColumnType.BIGINT, nullable=False), metadata={}
            ),
            AlterColumn("age", AGE),
        ),
        (lambda: tables.add_column(table_id=t, column=NOTE, metadata={}), RemoveColumn(NOTE)),
    ]
    for ask, expected in cases:
        before = (await world.table(t)).schema
        accepted = await _done(world, await ask())
        assert (await world.table(t)).undo(accepted.operation_id) == expected
        undo = await _done(world, await _undo(world, accepted))
        table = await world.table(t)
        assert table.undone_by(accepted.operation_id) == undo.operation_id
        assert table.schema == before
        asked = next(
            e
            for e in world.core.state.streams[stream_name(t)]
            if e.data["operation_id"] == str(undo.operation_id)
        )
        assert asked.data["undoes"] == str(accepted.operation_id)


def _confirmed(table: Table, change: Change, *, undoes: UUID | None = None) -> UUID:
    """Accept ``change`` on the aggregate and confirm it (the fakes' databases hold no indexes)."""
    operation_id = uuid4()
    table.accept(change, operation_id=operation_id, undoes=undoes)
    table.confirm(operation_id)
    return operation_id


def test_an_index_added_is_dropped_and_one_dropped_is_rebuilt() -> None:
    created = uuid4()
    table = Table.create(
        table_id=uuid4(), name="people", database="default", operation_id=created, columns=(AGE,)
    )
    table.confirm(created)
    index = Index("people_age_idx", ("age",))
    added = _confirmed(table, AddIndex(index))
    assert table.undo(added) == DropIndex(index)
    dropped = _confirmed(table, DropIndex(index))
    assert table.undo(dropped) == AddIndex(index)
    with pytest.raises(UndoConflict, match=str(dropped)):  # the drop depends on the add
        table.undo(added)
    _confirmed(table, AddIndex(index), undoes=dropped)
    assert table.schema.index(index.name) == index
    # The drop cancelled by its undo, nothing stands in the way of undoing the add any more.
    assert table.undo(added) == DropIndex(index)


async def test_an_undo_of_an_undo_redoes_and_an_operation_is_undone_once() -> None:
    world = World()
    created = await world.settled()
    t = created.table_id
    rename = await _done(world, await world.tables.rename_table(table_id=t, name="persons", metadata={}))
    undo = await _done(world, await _undo(world, rename))
    assert (await world.table(t)).name == "people"
    events = _refused_writing_nothing(world, t)
    with pytest.raises(AlreadyUndone) as refused:
        await _undo(world, rename)
    assert refused.value.details == {"undone_by": str(undo.operation_id)}
    assert _refused_writing_nothing(world, t) == events
    redo = await _done(world, await _undo(world, undo))
    table = await world.table(t)
    assert table.name == "persons" and table.undone_by(undo.operation_id) == redo.operation_id
    with pytest.raises(AlreadyUndone):
        await _undo(world, undo)


async def test_an_undo_in_flight_counts_as_undone() -> None:
    world = World()
    created = await world.settled()
    rename = await _done(
        world, await world.tables.rename_table(table_id=created.table_id, name="persons", metadata={})
    )
    first = only_accepted(await _undo(world, rename))  # accepted, its saga not run yet
    with pytest.raises(AlreadyUndone, match=str(first.operation_id)):
        await _undo(world, rename)


async def test_an_operation_in_flight_or_rejected_cannot_be_undone() -> None:
    world = World()
    created = await world.create()
    with pytest.raises(OperationNotCompleted, match="not completed yet"):
        await _undo(world, created)
    await world.run(created)
    change = only_accepted(await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={}))

    async def reject(session: Session) -> None:
        (await session.table(change.table_id)).reject(change.operation_id, reason="refused")

    await world.uow.run(reject, metadata={"actor": "test"})
    events = _refused_writing_nothing(world, created.table_id)
    with pytest.raises(OperationNotCompleted, match="rejected"):
        await _undo(world, change)
    with pytest.raises(OperationNotCompleted):  # an id the table never had
        await _undo(world, Accepted(created.table_id, uuid4()))
    assert _refused_writing_nothing(world, created.table_id) == events


async def test_kinds_that_need_the_trash_are_refused_when_it_is_off() -> None:
    world, created = await _settled_with_age()
    t = created.table_id
    removed = await _done(world, await world.tables.remove_column(table_id=t, name="age", metadata={}))
    events = _refused_writing_nothing(world, t)
    with pytest.raises(UndoUnsupported, match="needs the trash") as refused:
        await _undo(world, removed)
    assert refused.value.details is not None and refused.value.details["needs"] == "trash"
    deleted = await _done(world, await world.tables.delete_table(table_id=t, metadata={}))
    with pytest.raises(UndoUnsupported, match="restores the table from the trash"):
        await _undo(world, deleted)
    # Undoing a creation would drop the table and its rows at once: refused too.
    fresh = World()
    made = await fresh.settled()
    with pytest.raises(UndoUnsupported, match="the trash is off") as refused:
        await _undo(fresh, made)
    assert refused.value.details == {"needs": "trash", "kind": "create_table"}
    # The undo of an added column removes it; the undo of that (a redo) would bring it back without its
    # values: it needs the trash too.
    world, created = await _settled_with_age()
    note = await _done(
        world, await world.tables.add_column(table_id=created.table_id, column=NOTE, metadata={})
    )
    removal = await _done(world, await _undo(world, note))
    with pytest.raises(UndoUnsupported, match="needs the trash"):
        await _undo(world, removal)
    assert events  # (the first world's refusals wrote nothing)
    assert _refused_writing_nothing(fresh, made.table_id)[0] == fresh.events(made.table_id)


async def test_with_the_trash_on_undos_that_drop_keep_their_rows_in_the_trash() -> None:
    world = World()
    world.tables.trash_retention_s = 3600
    created = await world.settled()
    t = created.table_id
    added = await _done(world, await world.tables.add_column(table_id=t, column=AGE, metadata={}))
    # Every later change depends on the table's creation: undo them first.
    with pytest.raises(UndoConflict) as conflict:
        await _undo(world, created)
    assert conflict.value.details == {"operation_id": str(added.operation_id)}
    # The undo of the added column keeps its values in the trash, keyed by the primary key.
    only_accepted(await _undo(world, added))
    [pending] = (await world.table(t)).pending
    assert isinstance(pending.change, RemoveColumn) and pending.change.column.name == "age"
    assert pending.change.trash.startswith("_ssg_trash_") and pending.change.retention_s == 3600
    assert [c.name for c in pending.change.key] == ["id"]
    # The undo of a creation (nothing later) moves the table to the trash.
    other = await world.settled("others")
    only_accepted(await _undo(world, other))
    [pending] = (await world.table(other.table_id)).pending
    assert isinstance(pending.change, DeleteTable) and pending.change.trash.startswith("_ssg_trash_")
    assert pending.undoes == other.operation_id


async def test_a_reconciliation_has_no_inverse() -> None:
    world = World()
    created = await world.settled()
    repair = await world.tables.reconcile(table_id=created.table_id, strategy="repair", metadata={})
    await _done(world, repair)
    with pytest.raises(UndoUnsupported, match="no inverse"):
        await _undo(world, repair)


async def test_a_later_change_of_the_same_column_conflicts_and_names_it() -> None:
    world, created = await _settled_with_age()
    t = created.table_id
    retype = await _done(
        world,
        await world.tables.alter_column(
            table_id=t, name="age", patch=ColumnPatch(type=ColumnType.BIGINT), metadata={}
        ),
    )
    # A change of another column does not stand in the way.
    await _done(world, await world.tables.add_column(table_id=t, column=NOTE, metadata={}))
    assert (await world.table(t)).undo(retype.operation_id) == AlterColumn("age", AGE)
    rename = await _done(
        world,
        await world.tables.alter_column(table_id=t, name="age", patch=ColumnPatch(name="years"), metadata={}),
    )
    events = _refused_writing_nothing(world, t)
    with pytest.raises(UndoConflict, match=str(rename.operation_id)) as refused:
        await _undo(world, retype)
    assert refused.value.details == {"operation_id": str(rename.operation_id)}
    assert _refused_writing_nothing(world, t) == events
    # The rename undone, the type change can be undone; redone, it conflicts again (named: the redo).
    unrename = await _done(world, await _undo(world, rename))
    assert (await world.table(t)).undo(retype.operation_id) == AlterColumn("age", AGE)
    redo = await _done(world, await _undo(world, unrename))
    with pytest.raises(UndoConflict, match=str(redo.operation_id)):
        await _undo(world, retype)


async def test_a_later_change_in_flight_conflicts_too() -> None:
    world, created = await _settled_with_age()
    t = created.table_id
    added = await _done(world, await world.tables.add_column(table_id=t, column=NOTE, metadata={}))
    index = only_accepted(
        await world.tables.add_index(table_id=t, index=Index("people_note_idx", ("note",)), metadata={})
    )
    with pytest.raises(UndoConflict, match=str(index.operation_id)):
        await _undo(world, added)


async def test_an_added_column_removed_later_conflicts() -> None:
    world, created = await _settled_with_age()
    t = created.table_id
    added = await _done(world, await world.tables.add_column(table_id=t, column=NOTE, metadata={}))
    removed = await _done(world, await world.tables.remove_column(table_id=t, name="note", metadata={}))
    with pytest.raises(UndoConflict, match=str(removed.operation_id)):
        await _undo(world, added)


async def test_a_dry_run_answers_the_plan_of_the_inverse_and_if_match_is_checked() -> None:
    world = World()
    created = await world.settled()
    t = created.table_id
    rename = await _done(world, await world.tables.rename_table(table_id=t, name="persons", metadata={}))
    events = _refused_writing_nothing(world, t)
    planned = await _undo(world, rename, asked=Asked(dry_run=True))
    assert isinstance(planned, Planned) and planned.after.name == "people"
    with pytest.raises(DomainError, match="version"):
        await _undo(world, rename, asked=Asked(expected_version=0))
    assert _refused_writing_nothing(world, t) == events


async def test_accept_refuses_a_change_that_is_not_the_undo_it_claims_to_be() -> None:
    table = Table.create(table_id=uuid4(), name="people", database="default", operation_id=uuid4())
    with pytest.raises(OperationNotCompleted):
        table.accept(AddColumn(AGE), operation_id=uuid4(), undoes=uuid4())
    world = World()
    created = await world.settled()
    rename = await _done(
        world, await world.tables.rename_table(table_id=created.table_id, name="persons", metadata={})
    )
    with pytest.raises(IllegalTransition):
        (await world.table(created.table_id)).accept(
            RenameTable("other"), operation_id=uuid4(), undoes=rename.operation_id
        )


async def test_what_undo_needs_survives_snapshots() -> None:
    world, created = await _settled_with_age()  # World snapshots every 5 events
    t = created.table_id
    rename = await _done(world, await world.tables.rename_table(table_id=t, name="persons", metadata={}))
    await _done(world, await _undo(world, rename))
    assert world.core.state.snapshots[stream_name(t)]
    loaded = await world.table(t)
    replayed = Table(table_id=t)
    for recorded in world.core.state.streams[stream_name(t)]:
        replayed.apply(event_from_data(recorded.event_type, recorded.data))
    assert loaded.done == replayed.done and loaded.state_equals(replayed)
    # A snapshot from before tables kept "done" is not used: the replay rebuilds what undo needs.
    for _, state in world.core.state.snapshots[stream_name(t)]:
        del state["done"]
    assert (await world.table(t)).done == replayed.done


def test_an_undo_names_its_operation_in_its_event_and_other_changes_keep_their_payload() -> None:
    table_id, operation_id, target = uuid4(), uuid4(), uuid4()
    plain = TableChanged(table_id, operation_id, "add", AGE.to_dict())
    assert "undoes" not in plain.to_data()
    assert event_from_data("TableChanged", plain.to_data()) == plain
    undo = TableAltered(table_id, operation_id, RenameTable("people").to_dict(), None, str(target))
    assert undo.to_data()["undoes"] == str(target)
    assert event_from_data("TableAltered", undo.to_data()) == undo


async def test_a_rejected_undo_leaves_the_operation_undoable() -> None:
    world = World()
    created = await world.settled()
    rename = await _done(
        world, await world.tables.rename_table(table_id=created.table_id, name="persons", metadata={})
    )
    first = only_accepted(await _undo(world, rename))

    async def reject(session: Session) -> None:
        (await session.table(first.table_id)).reject(first.operation_id, reason="refused")

    await world.uow.run(reject, metadata={"actor": "test"})
    table = await world.table(created.table_id)
    assert table.undone_by(rename.operation_id) is None and table.name == "persons"
    second = await _done(world, await _undo(world, rename))
    assert (await world.table(created.table_id)).undone_by(rename.operation_id) == second.operation_id


def test_an_adoption_stands_in_the_way_of_every_earlier_undo_and_a_repair_of_none() -> None:
    created = uuid4()
    table = Table.create(table_id=uuid4(), name="people", database="default", operation_id=created)
    table.confirm(created)
    added = _confirmed(table, AddColumn(AGE))
    repair = uuid4()
    table.reconcile("repair", operation_id=repair)
    table.confirm(repair)
    assert table.undo(added) == RemoveColumn(AGE)  # a repair leaves the metadata as it was
    adopt = uuid4()
    table.reconcile("adopt", operation_id=adopt)
    table.adopt(adopt, table.confirmed)
    with pytest.raises(UndoConflict, match=str(adopt)):  # an adoption may have changed anything
        table.undo(added)


async def test_an_undo_reaches_the_last_completed_operations_and_a_table_remembers_no_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table remembers its newest UNDO_REACH completed operations: loads of a table edited for years
    stay as cheap as a new table's (snapshots and replays alike), and an undo of an older operation is
    refused with a reason, writing nothing; the newest are undone as before. (A reach of 8 here: the
    in-memory ports copy their whole state per transaction.)"""
    assert UNDO_REACH == 100
    reach = 8
    monkeypatch.setattr(table_module, "UNDO_REACH", reach)
    monkeypatch.setattr(undo_module, "UNDO_REACH", reach)
    world = World()
    created = await world.settled()
    completed = [created]
    for i in range(reach + 5):
        column = Column(f"c{i}", ColumnType.INTEGER)
        completed.append(
            await _done(
                world, await world.tables.add_column(table_id=created.table_id, column=column, metadata={})
            )
        )
    table = await world.table(created.table_id)  # from a snapshot (every 5 events) and the events since
    assert [d.operation_id for d in table.done] == [a.operation_id for a in completed[-reach:]]
    replayed = Table(table_id=created.table_id)
    for e in world.core.state.streams[stream_name(created.table_id)]:
        replayed.apply(event_from_data(e.event_type, e.data))
    assert replayed.state_equals(table)
    # A snapshot taken before the reach was bounded holds every completed operation: read as a replay.
    unbounded = table.to_snapshot()
    unbounded["done"] = [{**unbounded["done"][0], "operation_id": str(uuid4())}] * 7 + unbounded["done"]
    assert Table.from_snapshot(unbounded, version=table.version).state_equals(table)

    before = _refused_writing_nothing(world, created.table_id)
    for too_old in (completed[0], completed[5]):
        with pytest.raises(UndoUnsupported, match=f"last {reach} completed operations"):
            await _undo(world, too_old)
    assert _refused_writing_nothing(world, created.table_id) == before
    await _done(world, await _undo(world, completed[-1]))  # the newest: undone (its column removed)
    assert f"c{reach + 4}" not in [c.name for c in (await world.table(created.table_id)).confirmed.columns]
