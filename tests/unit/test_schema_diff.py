"""The one schema diff: what differs between the metadata and a live table, as every caller sees it."""

from __future__ import annotations

from typing import Any

import pytest

from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType, Index, TableSchema
from schemasaga.domain.schema import (
    Difference,
    DifferenceKind,
    Expression,
    LiveColumn,
    LiveIndex,
    LiveTable,
    compare_column,
    describe,
    diff,
)

K = DifferenceKind
T = ColumnType


def live_of(
    column: Column,
    *,
    name: str | None = None,
    raw: str | None = None,
    default: Any = None,
    unique: bool = False,
) -> LiveColumn:
    return LiveColumn(
        name=name or column.name,
        type=column.type,
        raw_type=raw or column.type.value.upper(),
        nullable=column.nullable and not column.primary_key,
        primary_key=column.primary_key,
        default=default,
        unique=unique,
    )


def table(
    *columns: LiveColumn, name: str = "people", fold_case: bool = True, indexes: tuple[LiveIndex, ...] = ()
) -> LiveTable:
    return LiveTable(name, columns, fold_case=fold_case, indexes=indexes)


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


# -- defaults, uniqueness and indexes -------------------------------------------------------------


def test_defaults_compare_as_json_values() -> None:
    score = Column("score", T.INTEGER, default=10)
    assert diff([score], table(live_of(score, default=10)), table="people") == []
    assert diff([score], table(live_of(score, default=11)), table="people") == [
        Difference(K.DEFAULT_MISMATCH, "score", expected=10, actual=11)
    ]
    assert diff([score], table(live_of(score)), table="people") == [
        Difference(K.DEFAULT_MISMATCH, "score", expected=10, actual=None)
    ]
    now = Expression("now()")
    stamp = Column("at", T.DATETIME)
    assert diff([stamp], table(live_of(stamp, default=now)), table="people") == [
        Difference(K.DEFAULT_MISMATCH, "at", expected=None, actual=now)
    ]
    # JSON: true is not 1 (as Python would have it), a list compares element by element
    doc = Column("doc", T.JSON, default={"a": [1, True]})
    assert diff([doc], table(live_of(doc, default={"a": [1, True]})), table="people") == []
    assert diff([doc], table(live_of(doc, default={"a": [1, 1]})), table="people") != []
    flag = Column("flag", T.JSON, default=True)
    assert compare_column(flag, live_of(flag, default=1)) == [
        Difference(K.DEFAULT_MISMATCH, "flag", expected=True, actual=1)
    ]


def test_an_expression_default_is_never_a_literal() -> None:
    text_column = Column("code", T.TEXT, default="now()")
    assert compare_column(text_column, live_of(text_column, default=Expression("now()"))) == [
        Difference(K.DEFAULT_MISMATCH, "code", expected="now()", actual=Expression("now()"))
    ]


def test_uniqueness_of_a_column_list_reads_the_live_column() -> None:
    email = Column("email", T.STRING, unique=True)
    assert diff([email], table(live_of(email, unique=True)), table="people") == []
    assert diff([email], table(live_of(email, unique=False)), table="people") == [
        Difference(K.UNIQUE_MISMATCH, "email", expected=True, actual=False)
    ]
    # a list of columns compares no indexes
    live = table(live_of(email, unique=True), indexes=(LiveIndex("ix_other", ("email",)),))
    assert diff([email], live, table="people") == []


EMAIL = Column("email", T.STRING, unique=True)
CITY = Column("city", T.STRING)
SCHEMA = TableSchema(
    "people",
    (*DEFAULT_COLUMNS, EMAIL, CITY),
    (Index("ix_city_name", ("city", "name")), Index("uq_name_created", ("name", "created_at"), unique=True)),
)
LIVE_INDEXES = (
    LiveIndex("ix_city_name", ("city", "name")),
    LiveIndex("uq_name_created", ("name", "created_at"), unique=True),
    LiveIndex("any_name_at_all", ("email",), unique=True),
)


def live_schema(*indexes: LiveIndex, fold_case: bool = True) -> LiveTable:
    columns = [live_of(c, unique=c.unique) for c in SCHEMA.columns]
    return table(*columns, indexes=indexes, fold_case=fold_case)


def test_a_schema_as_the_metadata_says_has_no_difference() -> None:
    live = live_schema(*LIVE_INDEXES)
    assert diff(SCHEMA, live) == []
    assert diff(SCHEMA, live, table="people") == []
    assert diff(SCHEMA, None) == [Difference(K.MISSING_TABLE)]
    with pytest.raises(TypeError):
        diff(SCHEMA.columns, live)


def test_missing_extra_and_different_indexes() -> None:
    live = live_schema(
        LiveIndex("ix_city_name", ("name", "city")),  # columns in another order
        LiveIndex("any_name_at_all", ("email",), unique=True),
        LiveIndex("ix_stray", ("city",)),
    )
    assert diff(SCHEMA, live) == [
        Difference(
            K.INDEX_MISMATCH,
            index="ix_city_name",
            expected={"columns": ["city", "name"], "unique": False},
            actual={"columns": ["name", "city"], "unique": False},
        ),
        Difference(
            K.MISSING_INDEX,
            index="uq_name_created",
            expected={"columns": ["name", "created_at"], "unique": True},
        ),
        Difference(K.EXTRA_INDEX, index="ix_stray", actual={"columns": ["city"], "unique": False}),
    ]
    not_unique = live_schema(
        LiveIndex("ix_city_name", ("city", "name")),
        LiveIndex("uq_name_created", ("name", "created_at")),
        LiveIndex("any_name_at_all", ("email",), unique=True),
    )
    assert [d.kind for d in diff(SCHEMA, not_unique)] == [K.INDEX_MISMATCH]


def test_index_names_fold_case_where_the_engine_does() -> None:
    shouted = (LiveIndex("IX_CITY_NAME", ("CITY", "name")), *LIVE_INDEXES[1:])
    assert diff(SCHEMA, live_schema(*shouted, fold_case=True)) == []
    on_postgresql = diff(SCHEMA, live_schema(*shouted, fold_case=False))
    assert [(d.kind, d.index) for d in on_postgresql] == [
        (K.MISSING_INDEX, "ix_city_name"),
        (K.EXTRA_INDEX, "IX_CITY_NAME"),
    ]


def test_a_unique_column_takes_any_unique_index_on_it_alone() -> None:
    without = live_schema(*LIVE_INDEXES[:2])
    assert diff(SCHEMA, without) == [Difference(K.UNIQUE_MISMATCH, "email", expected=True, actual=False)]
    # a unique index on a column that the metadata says is not unique: one difference, not two
    on_city = live_schema(*LIVE_INDEXES, LiveIndex("uq_city", ("city",), unique=True))
    assert diff(SCHEMA, on_city) == [Difference(K.UNIQUE_MISMATCH, "city", expected=False, actual=True)]
    # a composite unique index makes no column unique
    composite = live_schema(*LIVE_INDEXES[:2], LiveIndex("uq_email_city", ("email", "city"), unique=True))
    assert [(d.kind, d.column, d.index) for d in diff(SCHEMA, composite)] == [
        (K.UNIQUE_MISMATCH, "email", None),
        (K.EXTRA_INDEX, None, "uq_email_city"),
    ]


def test_a_metadata_index_that_spells_a_columns_uniqueness_is_not_counted_twice() -> None:
    schema = TableSchema(
        "people", (Column("email", T.STRING),), (Index("uq_email", ("email",), unique=True),)
    )
    live = table(
        LiveColumn("email", T.STRING, "VARCHAR(255)", True, False, unique=True),
        indexes=(LiveIndex("uq_email", ("email",), unique=True),),
    )
    assert diff(schema, live) == []


def test_an_invalid_index_enforces_nothing() -> None:
    invalid = LiveIndex("any_name_at_all", ("email",), unique=True, valid=False)
    live = live_schema(*LIVE_INDEXES[:2], invalid)
    assert diff(SCHEMA, live) == [
        Difference(K.UNIQUE_MISMATCH, "email", expected=True, actual=False),
        Difference(
            K.EXTRA_INDEX,
            index="any_name_at_all",
            actual={"columns": ["email"], "unique": True, "valid": False},
        ),
    ]
    named = live_schema(LiveIndex("ix_city_name", ("city", "name"), valid=False), *LIVE_INDEXES[1:])
    assert diff(SCHEMA, named) == [
        Difference(
            K.INDEX_MISMATCH,
            index="ix_city_name",
            expected={"columns": ["city", "name"], "unique": False},
            actual={"columns": ["city", "name"], "unique": False, "valid": False},
        )
    ]


def test_the_live_schema_as_metadata() -> None:
    live = live_schema(*reversed(LIVE_INDEXES), LiveIndex("ix_broken", ("city",), valid=False))
    schema = live.to_schema()
    # the unique index of email is its column's uniqueness; the others in name order; no invalid one
    assert schema == SCHEMA
    assert diff(schema, live) == [
        Difference(
            K.EXTRA_INDEX, index="ix_broken", actual={"columns": ["city"], "unique": False, "valid": False}
        )
    ]
    # two unique indexes on one column: the first (by name) is its uniqueness, the other an index
    twice = live_schema(*LIVE_INDEXES, LiveIndex("a_unique_email", ("email",), unique=True))
    tracked = twice.to_schema()
    assert [i.name for i in tracked.indexes] == ["any_name_at_all", "ix_city_name", "uq_name_created"]
    assert diff(tracked, twice) == []


def test_what_cannot_be_tracked() -> None:
    with pytest.raises(ValueError, match="expression"):
        table(
            LiveColumn("at", T.DATETIME, "TIMESTAMPTZ", True, False, default=Expression("now()"))
        ).to_schema()
    with pytest.raises(ValueError, match="lower"):
        table(live_of(CITY), indexes=(LiveIndex("ix_lower", ("(lower(city))",)),)).to_schema()
    adopted = LiveColumn("score", T.INTEGER, "INT", False, False, default=0, unique=True).to_column()
    assert adopted == Column("score", T.INTEGER, nullable=False, default=0, unique=True)


def test_what_an_index_difference_concerns() -> None:
    missing = Difference(
        K.MISSING_INDEX, index="ix_city_name", expected={"columns": ["city", "name"], "unique": False}
    )
    assert missing.concerns("city", fold_case=False) and missing.concerns("NAME", fold_case=True)
    assert not missing.concerns("email", fold_case=True) and not missing.concerns("NAME", fold_case=False)
    assert missing.concerns_index("IX_CITY_NAME", fold_case=True)
    assert not missing.concerns_index("IX_CITY_NAME", fold_case=False)
    assert not Difference(K.MISSING_COLUMN, "city").concerns_index("ix_city_name", fold_case=True)
    assert Difference(K.MISSING_TABLE).concerns_index("ix_city_name", fold_case=True)
    assert Difference(K.UNIQUE_MISMATCH, "email", expected=True, actual=False).concerns(
        "email", fold_case=False
    )


NEW_SHAPES = [
    (
        Difference(K.DEFAULT_MISMATCH, "score", expected=10, actual=None),
        {"issue": "default_mismatch", "column": "score", "expected": 10, "actual": None},
    ),
    (
        Difference(K.DEFAULT_MISMATCH, "at", expected=None, actual=Expression("now()")),
        {"issue": "default_mismatch", "column": "at", "expected": None, "actual_expression": "now()"},
    ),
    (
        Difference(K.DEFAULT_MISMATCH, "doc", expected={"expression": "x"}, actual=[1]),
        {"issue": "default_mismatch", "column": "doc", "expected": {"expression": "x"}, "actual": [1]},
    ),
    (
        Difference(K.UNIQUE_MISMATCH, "email", expected=True, actual=False),
        {"issue": "unique_mismatch", "column": "email", "expected": True, "actual": False},
    ),
    (
        Difference(K.MISSING_INDEX, index="ix_a", expected={"columns": ["a"], "unique": False}),
        {"issue": "missing_index", "index": "ix_a", "expected": {"columns": ["a"], "unique": False}},
    ),
    (
        Difference(K.EXTRA_INDEX, index="ix_a", actual={"columns": ["a"], "unique": True, "valid": False}),
        {
            "issue": "extra_index",
            "index": "ix_a",
            "actual": {"columns": ["a"], "unique": True, "valid": False},
        },
    ),
    (
        Difference(
            K.INDEX_MISMATCH,
            index="ix_a",
            expected={"columns": ["a"], "unique": False},
            actual={"columns": ["a", "b"], "unique": False},
        ),
        {
            "issue": "index_mismatch",
            "index": "ix_a",
            "expected": {"columns": ["a"], "unique": False},
            "actual": {"columns": ["a", "b"], "unique": False},
        },
    ),
]


@pytest.mark.parametrize(("difference", "shape"), NEW_SHAPES)
def test_the_recorded_shape_of_each_schema_difference(
    difference: Difference, shape: dict[str, object]
) -> None:
    assert difference.to_dict() == shape
    assert Difference.from_dict(shape) == difference


@pytest.mark.parametrize(
    ("difference", "words"),
    [
        (
            Difference(K.DEFAULT_MISMATCH, "n", expected=5, actual=None),
            "column 'n' has default none instead of 5",
        ),
        (
            Difference(K.DEFAULT_MISMATCH, "at", expected=None, actual=Expression("now()")),
            "column 'at' has default now() instead of none",
        ),
        (
            Difference(K.DEFAULT_MISMATCH, "s", expected="ü'", actual="x"),
            """column 's' has default "x" instead of "ü'\"""",
        ),
        (Difference(K.UNIQUE_MISMATCH, "e", expected=False, actual=True), "column 'e' is unique"),
        (Difference(K.UNIQUE_MISMATCH, "e", expected=True, actual=False), "column 'e' is not unique"),
        (
            Difference(K.MISSING_INDEX, index="ix", expected={"columns": ["a", "b"], "unique": False}),
            "index 'ix', an index on (a, b), is missing",
        ),
        (
            Difference(K.EXTRA_INDEX, index="uq", actual={"columns": ["a"], "unique": True, "valid": False}),
            "it has another index 'uq', a unique index on (a) (invalid)",
        ),
        (
            Difference(
                K.INDEX_MISMATCH,
                index="ix",
                expected={"columns": ["a"], "unique": False},
                actual={"columns": ["a"], "unique": True},
            ),
            "index 'ix' is a unique index on (a) instead of an index on (a)",
        ),
    ],
)
def test_each_schema_difference_says_what_it_is(difference: Difference, words: str) -> None:
    assert difference.describe() == words
