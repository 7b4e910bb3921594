"""The table changes of the editing issue, on the Table aggregate: what each does to the schema, what
each refuses (nothing recorded then), and how a change whose premise is gone is told apart. Pure."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from schemasaga.domain import events
from schemasaga.domain.changes import (
    AddColumn,
    AddIndex,
    AlterColumn,
    DropIndex,
    OperationKind,
    RemoveColumn,
    RenameTable,
    change_from_dict,
    inverse,
)
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType, Index, TableSchema
from schemasaga.domain.errors import (
    ColumnExists,
    ColumnNotFound,
    DomainError,
    IllegalTransition,
    IndexExists,
    IndexNotFound,
    InvalidDefault,
    InvalidIndex,
    InvalidName,
    PrimaryKeyColumn,
    UnsupportedChange,
)
from schemasaga.domain.plan import Plan, Statement
from schemasaga.domain.table import Table

AGE = Column("age", ColumnType.INTEGER)


def confirmed(*columns: Column, indexes: tuple[Index, ...] = ()) -> Table:
    creation = uuid4()
    table = Table.create(
        table_id=uuid4(),
        name="people",
        database="db",
        operation_id=creation,
        columns=columns,
        indexes=indexes,
    )
    table.confirm(creation)
    return table


def accepted(table: Table, change: object, plan: Plan | None = None) -> object:
    operation_id = uuid4()
    table.accept(change, operation_id=operation_id, plan=plan)  # type: ignore[arg-type]
    return operation_id


def replayed(table: Table) -> Table:
    copy = Table(table_id=table.table_id)
    for event in table.changes:
        copy.apply(events.event_from_data(event.type_name(), json.loads(json.dumps(event.to_data()))))
    return copy


def test_a_new_table_has_the_default_columns_then_its_own_then_its_indexes() -> None:
    email = Column("email", ColumnType.STRING, nullable=False, default="a@b.c", unique=True)
    table = confirmed(AGE, email, indexes=(Index("ix_age", ("age", "email")),))
    assert table.confirmed.columns == (*DEFAULT_COLUMNS, AGE, email)
    assert table.confirmed.indexes == (Index("ix_age", ("age", "email")),)
    assert table.confirmed.primary_key == ("id",)
    assert replayed(table).confirmed == table.confirmed


@pytest.mark.parametrize(
    ("columns", "indexes", "error"),
    [
        ((Column("id", ColumnType.TEXT),), (), ColumnExists),
        ((Column("AGE", ColumnType.TEXT), Column("age", ColumnType.TEXT)), (), ColumnExists),
        ((Column("bad-name", ColumnType.TEXT),), (), InvalidName),
        ((Column("n", ColumnType.INTEGER, default="abc"),), (), InvalidDefault),
        ((Column("k", ColumnType.INTEGER, primary_key=True),), (), PrimaryKeyColumn),
        ((), (Index("ix", ("missing",)),), ColumnNotFound),
        ((), (Index("ix", ()),), InvalidIndex),
        ((), (Index("ix", ("name", "name")),), InvalidIndex),
        ((), (Index("ix", ("name",)), Index("IX", ("created_at",))), IndexExists),
        ((), (Index("a", ("name",)), Index("b", ("name",))), IndexExists),
        ((), (Index("bad name", ("name",)),), InvalidName),
    ],
)
def test_a_new_table_with_bad_columns_or_indexes_is_refused(columns, indexes, error) -> None:
    with pytest.raises(error):
        Table.create(
            table_id=uuid4(), name="t", database="db", operation_id=uuid4(), columns=columns, indexes=indexes
        )


def test_a_default_is_stored_in_its_canonical_form() -> None:
    table = confirmed(Column("price", ColumnType.DECIMAL, default="1.50"))
    assert table.confirmed.column("price") == Column("price", ColumnType.DECIMAL, default="1.5")


def test_renaming_a_table_changes_the_intended_name_and_the_physical_one_once_confirmed() -> None:
    table = confirmed()
    rename = accepted(table, RenameTable("persons"))
    assert (table.name, table.physical_name) == ("persons", "people")
    table.confirm(rename)  # type: ignore[arg-type]
    assert (table.name, table.physical_name) == ("persons", "persons")
    assert replayed(table).name == "persons"


def test_a_rejected_rename_gives_the_table_its_name_back() -> None:
    table = confirmed()
    rename = accepted(table, RenameTable("persons"))
    table.reject(rename, reason="locked")  # type: ignore[arg-type]
    assert (table.name, table.physical_name) == ("people", "people")
    assert replayed(table).name == "people"


def test_altering_a_column_renames_it_in_place_and_in_its_indexes() -> None:
    table = confirmed(AGE, indexes=(Index("ix_age", ("age", "name")),))
    years = Column("years", ColumnType.BIGINT, nullable=False, default=0, unique=True)
    alteration = accepted(table, AlterColumn("age", years))
    table.confirm(alteration)  # type: ignore[arg-type]
    assert [c.name for c in table.confirmed.columns] == ["id", "name", "created_at", "updated_at", "years"]
    assert table.confirmed.column("years") == years
    assert table.confirmed.indexes == (Index("ix_age", ("years", "name")),)
    assert AlterColumn("age", years).column_renames == {"age": "years"}
    assert replayed(table).confirmed == table.confirmed


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (AlterColumn("missing", Column("x", ColumnType.TEXT)), ColumnNotFound),
        (AlterColumn("age", Column("name", ColumnType.INTEGER)), ColumnExists),
        (AlterColumn("age", AGE), UnsupportedChange),
        (
            AlterColumn("id", Column("id", ColumnType.BIGINT, nullable=False, primary_key=True)),
            PrimaryKeyColumn,
        ),
        (
            AlterColumn("id", Column("key", ColumnType.INTEGER, nullable=False, primary_key=True)),
            PrimaryKeyColumn,
        ),
        (AlterColumn("age", Column("age", ColumnType.INTEGER, primary_key=True)), PrimaryKeyColumn),
        (RenameTable("people"), UnsupportedChange),
        (RenameTable("bad name"), InvalidName),
        (AddIndex(Index("ix_missing", ("nope",))), ColumnNotFound),
        (DropIndex(Index("ix_none", ("age",))), IndexNotFound),
        (RemoveColumn(Column("id", ColumnType.INTEGER, nullable=False, primary_key=True)), PrimaryKeyColumn),
    ],
)
def test_a_change_that_does_not_fit_is_refused_and_nothing_is_recorded(change, error) -> None:
    table = confirmed(AGE)
    before = list(table.changes)
    with pytest.raises(error):
        table.accept(change, operation_id=uuid4())
    assert table.changes == before


def test_a_column_in_an_index_cannot_be_removed_before_its_index() -> None:
    table = confirmed(AGE, indexes=(Index("ix_age", ("age",)),))
    with pytest.raises(UnsupportedChange, match="ix_age"):
        table.remove_column("age", operation_id=uuid4())


def test_changes_queue_and_are_validated_against_the_intended_schema() -> None:
    table = confirmed()
    accepted(table, AddColumn(AGE))
    accepted(table, AddIndex(Index("ix_age", ("age",))))  # the column is still being added
    accepted(table, AlterColumn("age", Column("years", ColumnType.INTEGER)))
    assert table.schema.indexes == (Index("ix_age", ("years",)),)
    with pytest.raises(ColumnNotFound):
        table.accept(AlterColumn("age", Column("x", ColumnType.TEXT)), operation_id=uuid4())


def test_a_change_whose_premise_was_rejected_cannot_be_confirmed() -> None:
    table = confirmed()
    addition = accepted(table, AddColumn(AGE))
    alteration = accepted(table, AlterColumn("age", Column("years", ColumnType.INTEGER)))
    table.reject(addition, reason="no")  # type: ignore[arg-type]
    head = table.head
    assert head is not None and head.operation_id == alteration
    with pytest.raises(ColumnNotFound):
        table.premise(head)
    with pytest.raises(IllegalTransition, match="no longer fits the table"):
        table.confirm(alteration)  # type: ignore[arg-type]
    table.reject(alteration, reason="its premise is gone")  # type: ignore[arg-type]
    assert table.synced and table.confirmed.column("years") is None


def test_a_plan_is_recorded_with_its_change_and_survives_replay_and_snapshots() -> None:
    plan = Plan("postgresql", (Statement('ALTER TABLE "people" RENAME TO "persons"', "ACCESS EXCLUSIVE"),))
    table = confirmed()
    rename = accepted(table, RenameTable("persons"), plan)
    assert isinstance(table.changes[-1], events.TableAltered)
    assert table.head is not None and table.head.plan == plan
    copy = replayed(table)
    assert copy.head is not None and copy.head.plan == plan
    copy.version = len(table.changes) - 1
    restored = Table.from_snapshot(json.loads(json.dumps(copy.to_snapshot())), version=copy.version)
    assert restored.head is not None and restored.head.plan == plan and restored.head.operation_id == rename


def test_a_tracked_table_is_confirmed_as_it_is() -> None:
    schema = TableSchema(
        "legacy",
        (Column("code", ColumnType.STRING, nullable=False, primary_key=True),),
        (Index("ix", ("code",)),),
    )
    table = Table.track(table_id=uuid4(), schema=schema, database="db", operation_id=uuid4())
    assert table.exists and table.synced and table.confirmed == schema and table.name == "legacy"
    assert replayed(table).confirmed == schema


@pytest.mark.parametrize("kind", list(OperationKind), ids=lambda k: k.value)
def test_every_change_round_trips_through_its_dict(kind: OperationKind) -> None:
    samples = {
        OperationKind.CREATE_TABLE: {
            "kind": "create_table",
            "schema": TableSchema("t", DEFAULT_COLUMNS).to_dict(),
        },
        OperationKind.ADD_COLUMN: {"kind": "add_column", "column": AGE.to_dict()},
        OperationKind.REMOVE_COLUMN: {"kind": "remove_column", "column": AGE.to_dict()},
        OperationKind.ALTER_COLUMN: {"kind": "alter_column", "name": "a", "column": AGE.to_dict()},
        OperationKind.RENAME_TABLE: {"kind": "rename_table", "name": "t2"},
        OperationKind.ADD_INDEX: {"kind": "add_index", "index": Index("i", ("a",), True).to_dict()},
        OperationKind.DROP_INDEX: {"kind": "drop_index", "index": Index("i", ("a",)).to_dict()},
        OperationKind.DELETE_TABLE: {"kind": "delete_table"},
        OperationKind.REPAIR: {"kind": "repair"},
        OperationKind.ADOPT: {"kind": "adopt"},
        OperationKind.RESTORE_TABLE: {"kind": "restore_table", "trash_id": "x", "trash": "_t", "name": "t"},
        OperationKind.RESTORE_COLUMN: {
            "kind": "restore_column",
            "trash_id": "x",
            "trash": "_t",
            "column": AGE.to_dict(),
            "source": "a",
            "key": [DEFAULT_COLUMNS[0].to_dict()],
        },
        OperationKind.PURGE_TRASH: {"kind": "purge_trash", "trash_id": "x", "trash": "_t"},
    }
    change = change_from_dict(samples[kind])
    assert change.kind is kind
    assert change.to_dict() == samples[kind]


def test_a_change_that_keeps_data_in_the_trash_round_trips_with_it() -> None:
    for sample in (
        {"kind": "delete_table", "trash": "_ssg_trash_0123456789abcdef", "key": [], "retention_s": 60},
        {
            "kind": "remove_column",
            "column": AGE.to_dict(),
            "trash": "_ssg_trash_0123456789abcdef",
            "key": [DEFAULT_COLUMNS[0].to_dict()],
            "retention_s": 60,
        },
    ):
        assert change_from_dict(sample).to_dict() == sample


def test_domain_errors_of_changes_have_their_own_codes() -> None:
    codes = {e.code for e in (InvalidDefault, InvalidIndex, IndexExists, IndexNotFound, UnsupportedChange)}
    assert len(codes) == 5 and all(issubclass(e, DomainError) for e in (InvalidDefault, IndexExists))


@pytest.mark.parametrize(
    "change",
    [
        RenameTable("persons"),
        AlterColumn("age", Column("years", ColumnType.BIGINT, nullable=False, default=1, unique=True)),
        AddIndex(Index("ix_age", ("age", "name"), unique=True)),
        DropIndex(Index("ix_name", ("name",))),
        AddColumn(Column("extra", ColumnType.JSON, default={"a": 1})),
        RemoveColumn(AGE),
    ],
    ids=lambda c: c.kind.value,
)
def test_the_inverse_of_a_change_takes_the_schema_back(change) -> None:
    before = confirmed(AGE, indexes=(Index("ix_name", ("name",)),)).confirmed
    after = change.apply(before)
    assert after != before
    assert inverse(change, before).apply(after) == before
