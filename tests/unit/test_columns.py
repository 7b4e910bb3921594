"""Columns as events and snapshots store them: every field survives, a partial dict takes the defaults."""

from __future__ import annotations

import json

import pytest

from schemasaga.domain.columns import Column, ColumnType


@pytest.mark.parametrize(
    "column",
    [
        Column("score", ColumnType.DECIMAL, nullable=False, default="0"),
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
    }
    assert Column.from_dict(data) == column


def test_a_column_dict_with_only_a_name_and_a_type_takes_the_defaults() -> None:
    # What an event recorded before a field existed holds: nullable, no default, not a key.
    column = Column.from_dict({"name": "age", "type": "integer"})
    assert column == Column("age", ColumnType.INTEGER)
    assert (column.nullable, column.default, column.primary_key) == (True, None, False)


def test_a_column_dict_with_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="'varchar'"):
        Column.from_dict({"name": "age", "type": "varchar"})
