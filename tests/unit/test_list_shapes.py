"""Column.normal_dict and Index.normal_dict (the list's columns, api/pages.py) are
``to_dict(from_dict(...))``: the same keys in the same order, old rows' shapes too."""

from __future__ import annotations

from typing import Any

import pytest

from schemasaga.domain.columns import Column, Index


@pytest.mark.parametrize(
    "data",
    [
        {"name": "a", "type": "integer"},  # an old row: the fields with defaults left out
        {"name": "b", "type": "text", "nullable": 0, "default": "x", "primary_key": 1, "unique": 1},
        {"unique": False, "default": [1, {"k": None}], "type": "json", "name": "c", "nullable": True},
    ],
)
def test_a_stored_column_normalizes_as_the_column_object_does(data: dict[str, Any]) -> None:
    assert list(Column.normal_dict(data).items()) == list(Column.from_dict(data).to_dict().items())


def test_a_stored_index_normalizes_as_the_index_object_does() -> None:
    for data in ({"name": "i", "columns": ["a", "b"]}, {"name": "j", "columns": ("a",), "unique": 1}):
        assert list(Index.normal_dict(data).items()) == list(Index.from_dict(data).to_dict().items())


def test_an_unknown_stored_type_is_refused() -> None:
    with pytest.raises(KeyError):
        Column.normal_dict({"name": "a", "type": "nope"})
