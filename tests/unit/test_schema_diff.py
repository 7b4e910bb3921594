"""The one schema diff: what differs between the metadata and a live table, as every caller sees it."""

from __future__ import annotations

import pytest

from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType
from schemasaga.domain.schema import (
    Difference,
    DifferenceKind,
    LiveColumn,
    LiveTable,
    compare_column,
    describe,
    diff,
)

K = DifferenceKind
T = ColumnType


def live_of(column: Column, *, name: str | None = None, raw: str | None = None) -> LiveColumn:
    return LiveColumn(
        name=name or column.name,
        type=column.type,
        raw_type=raw or column.type.value.upper(),
        nullable=column.nullable and not column.primary_key,
        primary_key=column.primary_key,
    )


def table(*columns: LiveColumn, name: str = "people", fold_case: bool = True) -> LiveTable:
    return LiveTable(name, columns, fold_case=fold_case)


SAME = table(*(live_of(c) for c in DEFAULT_COLUMNS))


def test_a_table_as_the_metadata_says_has_no_difference() -> None:
    assert diff(DEFAULT_COLUMNS, SAME, table="people") == []


def test_a_missing_table() -> None:
    assert diff(DEFAULT_COLUMNS, None, table="people") == [Difference(K.MISSING_TABLE)]


def test_a_table_name_spelled_in_another_case() -> None:
    live = table(*SAME.columns, name="People")
    assert diff(DEFAULT_COLUMNS, live, table="people") == [
        Difference(K.TABLE_NAME_MISMATCH, expected="people", actual="People")
    ]


def test_missing_and_extra_columns() -> None:
    live = table(
        *(live_of(c) for c in DEFAULT_COLUMNS if c.name != "name"),
        LiveColumn("nick", T.STRING, "VARCHAR(255)", True, False),
        LiveColumn("blob", None, "BYTEA", True, False),
    )
    assert diff(DEFAULT_COLUMNS, live, table="people") == [
        Difference(K.MISSING_COLUMN, "name"),
        Difference(K.EXTRA_COLUMN, "nick", actual="string"),
        Difference(K.EXTRA_COLUMN, "blob", actual="BYTEA"),
    ]


def test_the_exact_name_wins_over_a_twin_in_another_case() -> None:
    # On PostgreSQL "age" and "Age" are two columns: "age" is ours, "Age" is extra.
    age = Column("age", T.INTEGER)
    live = table(live_of(age, name="Age"), live_of(age), fold_case=False)
    assert diff([age], live, table="people") == [Difference(K.EXTRA_COLUMN, "Age", actual="integer")]


def test_a_column_renamed_in_letter_case_only() -> None:
    age = Column("age", T.INTEGER)
    assert diff([age], table(live_of(age, name="AGE")), table="people") == [
        Difference(K.NAME_MISMATCH, "age", actual="AGE")
    ]


def test_type_nullability_and_key_differences() -> None:
    expected = Column("age", T.INTEGER, nullable=False)
    live = LiveColumn("age", T.BIGINT, "BIGINT", nullable=True, primary_key=True)
    assert compare_column(expected, live) == [
        Difference(K.TYPE_MISMATCH, "age", expected="integer", actual="bigint"),
        # A key column is never NULL, whatever the engine reports.
        Difference(K.PRIMARY_KEY_MISMATCH, "age", expected=False, actual=True),
    ]
    assert compare_column(Column("age", T.INTEGER), live_of(Column("age", T.INTEGER), raw="INT4")) == []
    unknown = LiveColumn("age", None, "INTEGER UNSIGNED", nullable=True, primary_key=False)
    assert compare_column(Column("age", T.INTEGER), unknown) == [
        Difference(K.TYPE_MISMATCH, "age", expected="integer", actual="INTEGER UNSIGNED")
    ]


@pytest.mark.parametrize(("expected", "actual"), [(True, False), (False, True)])
def test_nullability(expected: bool, actual: bool) -> None:
    column = Column("note", T.TEXT, nullable=expected)
    live = LiveColumn("note", T.TEXT, "TEXT", nullable=actual, primary_key=False)
    assert diff([column], table(live), table="people") == [
        Difference(K.NULLABILITY_MISMATCH, "note", expected=expected, actual=actual)
    ]


def test_a_primary_key_that_an_engine_reports_as_nullable_is_not_a_difference() -> None:
    # SQLite: `id INTEGER PRIMARY KEY` without NOT NULL, adopted as it inspects.
    sqlite_id = LiveColumn("id", T.INTEGER, "INTEGER", nullable=True, primary_key=True)
    adopted = sqlite_id.to_column()
    assert (adopted.nullable, adopted.primary_key) == (False, True)
    assert diff([adopted], table(sqlite_id), table="people") == []
    as_declared = Column("id", T.INTEGER, nullable=True, primary_key=True)
    assert diff([as_declared], table(sqlite_id), table="people") == []


def test_a_column_of_no_logical_type_cannot_be_adopted() -> None:
    with pytest.raises(ValueError, match="BYTEA"):
        LiveColumn("blob", None, "BYTEA", True, False).to_column()


def test_looking_up_a_live_column() -> None:
    exact, twin = (
        LiveColumn("age", T.INTEGER, "INT", True, False),
        LiveColumn("Age", T.TEXT, "TEXT", True, False),
    )
    assert table(twin, exact).column("age") is exact
    assert table(twin).column("AGE") is twin
    assert table(twin).column("name") is None
    assert table(twin, fold_case=True).is_column("Age", "age")
    assert not table(twin, fold_case=False).is_column("Age", "age")
    assert table(twin, fold_case=False).is_column("Age", "Age")


def test_what_a_difference_concerns() -> None:
    extra = Difference(K.EXTRA_COLUMN, "Age", actual="integer")
    assert extra.concerns("Age", fold_case=False) and extra.concerns("age", fold_case=True)
    assert not extra.concerns("age", fold_case=False) and not extra.concerns("name", fold_case=True)
    mismatch = Difference(K.TYPE_MISMATCH, "age", expected="integer", actual="text")
    assert mismatch.concerns("age", fold_case=False) and not mismatch.concerns("AGE", fold_case=True)
    for whole in (Difference(K.MISSING_TABLE), Difference(K.TABLE_NAME_MISMATCH, expected="a", actual="A")):
        assert whole.concerns("anything", fold_case=False)
    assert not Difference(K.UNREADABLE, detail="a view").concerns("age", fold_case=True)


# The shapes recorded in TableDriftDetected events and answered by the drift report: never change them.
SHAPES = [
    (Difference(K.MISSING_TABLE), {"issue": "missing_table"}),
    (
        Difference(K.TABLE_NAME_MISMATCH, expected="people", actual="People"),
        {"issue": "table_name_mismatch", "expected": "people", "actual": "People"},
    ),
    (Difference(K.MISSING_COLUMN, "age"), {"issue": "missing_column", "column": "age"}),
    (
        Difference(K.EXTRA_COLUMN, "nick", actual="string"),
        {"issue": "extra_column", "column": "nick", "actual": "string"},
    ),
    (
        Difference(K.NAME_MISMATCH, "name", actual="Name"),
        {"issue": "name_mismatch", "column": "name", "actual": "Name"},
    ),
    (
        Difference(K.TYPE_MISMATCH, "age", expected="integer", actual="text"),
        {"issue": "type_mismatch", "column": "age", "expected": "integer", "actual": "text"},
    ),
    (
        Difference(K.NULLABILITY_MISMATCH, "age", expected=False, actual=True),
        {"issue": "nullability_mismatch", "column": "age", "expected": False, "actual": True},
    ),
    (
        Difference(K.PRIMARY_KEY_MISMATCH, "id", expected=True, actual=False),
        {"issue": "primary_key_mismatch", "column": "id", "expected": True, "actual": False},
    ),
    (Difference(K.UNREADABLE, detail="a view"), {"issue": "unreadable", "detail": "a view"}),
]


@pytest.mark.parametrize(("difference", "shape"), SHAPES)
def test_the_recorded_shape_of_each_difference(difference: Difference, shape: dict[str, object]) -> None:
    assert difference.to_dict() == shape
    assert Difference.from_dict(shape) == difference


@pytest.mark.parametrize(
    ("difference", "words"),
    [
        (Difference(K.MISSING_TABLE), "the table is missing"),
        (
            Difference(K.TABLE_NAME_MISMATCH, expected="people", actual="People"),
            "its name is spelled 'People' (names are unique regardless of case)",
        ),
        (Difference(K.MISSING_COLUMN, "age"), "column 'age' is missing"),
        (Difference(K.EXTRA_COLUMN, "nick", actual="string"), "it has another column 'nick' (string)"),
        (Difference(K.NAME_MISMATCH, "name", actual="Name"), "column 'name' is spelled 'Name'"),
        (
            Difference(K.TYPE_MISMATCH, "age", expected="integer", actual="text"),
            "column 'age' has type text instead of integer",
        ),
        (Difference(K.NULLABILITY_MISMATCH, "age", expected=False, actual=True), "column 'age' allows NULL"),
        (Difference(K.NULLABILITY_MISMATCH, "age", expected=True, actual=False), "column 'age' is NOT NULL"),
        (
            Difference(K.PRIMARY_KEY_MISMATCH, "id", expected=False, actual=True),
            "column 'id' is part of the primary key",
        ),
        (
            Difference(K.PRIMARY_KEY_MISMATCH, "id", expected=True, actual=False),
            "column 'id' is not part of the primary key",
        ),
        (Difference(K.UNREADABLE, detail="a view"), "the table cannot be read (a view)"),
    ],
)
def test_each_difference_says_what_it_is(difference: Difference, words: str) -> None:
    assert difference.describe() == words


def test_differences_are_described_together() -> None:
    assert describe([Difference(K.MISSING_COLUMN, "a"), Difference(K.MISSING_COLUMN, "b")]) == (
        "column 'a' is missing; column 'b' is missing"
    )
