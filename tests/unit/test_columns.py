"""Columns as events and snapshots store them: every field survives, a partial dict takes the defaults."""

from __future__ import annotations

import json

import pytest

from schemasaga.domain.columns import Column, ColumnType, canonical_default, index_name
from schemasaga.domain.errors import InvalidDefault


@pytest.mark.parametrize(
    "column",
    [
        Column("score", ColumnType.DECIMAL, nullable=False, default="0", unique=True),
        Column("note", ColumnType.TEXT, default="n/a"),
        Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),
        Column("plain", ColumnType.BOOLEAN),
    ],
    ids=["not-null-with-default", "nullable-with-default", "primary-key", "plain"],
)
def test_a_column_round_trips_through_its_dict(column: Column) -> None:
    data = json.loads(json.dumps(column.to_dict()))
    assert data == {
        "name": column.name,
        "type": column.type.value,
        "nullable": column.nullable,
        "default": column.default,
        "primary_key": column.primary_key,
        "unique": column.unique,
    }
    assert Column.from_dict(data) == column


def test_a_column_dict_with_only_a_name_and_a_type_takes_the_defaults() -> None:
    # What an event recorded before a field existed holds: nullable, no default, not a key.
    column = Column.from_dict({"name": "age", "type": "integer"})
    assert column == Column("age", ColumnType.INTEGER)
    assert (column.nullable, column.default, column.primary_key, column.unique) == (True, None, False, False)


def test_a_column_dict_with_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="'varchar'"):
        Column.from_dict({"name": "age", "type": "varchar"})


@pytest.mark.parametrize(
    ("kind", "given", "stored"),
    [
        (ColumnType.INTEGER, 42, 42),
        (ColumnType.BIGINT, -(2**63), -(2**63)),
        (ColumnType.FLOAT, 1, 1.0),
        (ColumnType.DECIMAL, "1.50", "1.5"),
        (ColumnType.DECIMAL, 100, "100"),
        (ColumnType.DECIMAL, "-0.000", "0"),
        (ColumnType.BOOLEAN, False, False),
        (ColumnType.TEXT, "it's", "it's"),
        (ColumnType.STRING, "x" * 255, "x" * 255),
        (ColumnType.DATE, "2024-02-29", "2024-02-29"),
        (ColumnType.TIMESTAMP, "2024-01-01T10:00", "2024-01-01 10:00:00"),
        (ColumnType.DATETIME, "2024-01-01T02:00:00+02:00", "2024-01-01 00:00:00+00:00"),
        (ColumnType.JSON, {"a": [1, None]}, {"a": [1, None]}),
        # jsonb's order of keys (shorter first, then by their bytes) and its numbers, at every depth.
        (ColumnType.JSON, {"zz": {"b": 1, "a": 2}, "é": 0, "z": [{"bb": -0.0, "a": 1e16}]}, None),
        (ColumnType.JSON, 1.5e300, int(1.5e300)),
        (ColumnType.JSON, [0.1, 1e-7, 2.0], [0.1, 1e-7, 2.0]),
        (ColumnType.UUID, "00000000-0000-0000-0000-00000000000A", "00000000-0000-0000-0000-00000000000a"),
    ],
)
def test_a_default_is_kept_in_its_canonical_form(kind: ColumnType, given: object, stored: object) -> None:
    if stored is None:
        stored = {"z": [{"a": 10**16, "bb": 0.0}], "zz": {"a": 2, "b": 1}, "é": 0}
    canonical = canonical_default(kind, given)
    assert canonical == stored
    # Equal is not enough for JSON: the text (key order, numbers' spelling) is what the DDL compares.
    assert json.dumps(canonical) == json.dumps(stored)


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        (ColumnType.INTEGER, "abc"),
        (ColumnType.INTEGER, True),
        (ColumnType.INTEGER, 1.5),
        (ColumnType.INTEGER, 2**31),
        (ColumnType.BIGINT, 2**63),
        (ColumnType.FLOAT, float("nan")),
        (ColumnType.FLOAT, "1.0"),
        (ColumnType.DECIMAL, "1e40"),
        (ColumnType.DECIMAL, "0.00000000001"),
        (ColumnType.DECIMAL, "abc"),
        (ColumnType.BOOLEAN, 1),
        (ColumnType.TEXT, 5),
        (ColumnType.TEXT, "a\x00b"),
        (ColumnType.STRING, "x" * 256),
        (ColumnType.DATE, "2023-02-29"),
        (ColumnType.TIMESTAMP, "2024-01-01T00:00:00+00:00"),
        (ColumnType.DATETIME, "2024-01-01T00:00:00"),
        (ColumnType.UUID, "not-a-uuid"),
        (ColumnType.JSON, {"a": ["b\x00"]}),
        (ColumnType.JSON, {"a\x00": 1}),
        (ColumnType.JSON, [float("inf")]),
    ],
)
def test_a_default_of_another_type_is_refused(kind: ColumnType, given: object) -> None:
    with pytest.raises(InvalidDefault, match=kind.value):
        canonical_default(kind, given)


def test_no_default_is_none_whatever_the_type() -> None:
    assert all(canonical_default(kind, None) is None for kind in ColumnType)


def test_a_generated_index_name_is_portable_and_keeps_long_names_apart() -> None:
    assert index_name("people", ("age",), unique=False) == "people_age_idx"
    assert index_name("people", ("email",), unique=True) == "people_email_key"
    long_a = index_name("t" * 60, ("a", "b"), unique=False)
    long_b = index_name("t" * 60, ("a", "c"), unique=False)
    assert len(long_a) == len(long_b) == 63 and long_a != long_b
