"""Long answers written straight to JSON: a page of tables, each with its columns and indexes.

A page of 100 tables of about 30 columns is some 3,000 column objects: built as ``ColumnOut`` models,
validated, then serialized by FastAPI's ``response_model``, that was most of the list's time. Here the
answer is built as plain dicts in the shape of ``TableOut`` and serialized by pydantic-core's own JSON
writer, the one FastAPI uses for a route's response model: the same bytes, without the models; and a
table's bytes are kept for the next page that holds the table in the same state. The routes keep their
``response_model``, so the OpenAPI document still declares the answer (``TablePage``);
tests/integration/test_list_fast_path.py compares both paths byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from uuid import UUID

from pydantic_core import from_json, to_json
from starlette.responses import Response

from schemasaga.domain.columns import Column, Index
from schemasaga.domain.table import Table
from schemasaga.services.views import TableListing, TableView


def _column(c: Column) -> dict[str, Any]:
    # The fields of ColumnOut, in its order.
    return {
        "name": c.name,
        "type": c.type.value,
        "nullable": c.nullable,
        "default": c.default,
        "primary_key": c.primary_key,
        "unique": c.unique,
    }


def _indexes(indexes: Iterable[Index]) -> list[dict[str, Any]]:
    return [{"name": i.name, "columns": list(i.columns), "unique": i.unique} for i in indexes]


def table_listing(t: TableListing, *, engine: str | None) -> bytes:
    """``TableOut.of`` of the same table's :class:`TableView`, as JSON."""
    return _listed(
        t.table_id,
        t.name,
        t.synced,
        t.exists,
        t.deleted,
        t.trashed,
        t.database,
        engine,
        t.version,
        t.columns_json,
        t.indexes_json,
    )


# A table's JSON is a function of the row (and the engine) alone: written once per state, kept for the
# next page that holds it (the same row: the same bytes; any change gives another key). 2,048 tables of
# 30 columns are some 15 MB, keys included.
@lru_cache(maxsize=2048, typed=True)
def _listed(
    table_id: UUID,
    name: str,
    synced: bool,
    exists: bool,
    deleted: bool,
    trashed: bool,
    database: str,
    engine: str | None,
    version: int,
    columns_json: str,
    indexes_json: str,
) -> bytes:
    # pydantic-core's parser gives the values json.loads gives on what PostgreSQL writes (no NaN, numbers
    # without exponent, big integers as ints), about 3x faster.
    stored = from_json(columns_json)
    if isinstance(stored, dict):  # written by a process from before migration 0005
        stored = list(stored.values())
    columns = [Column.normal_dict(c) for c in stored]
    return to_json(
        {
            "table_id": table_id,
            "name": name,
            "synced": synced,
            "exists": exists,
            "deleted": deleted,
            "trashed": trashed,
            "columns": {c["name"]: c for c in columns},
            "database": database,
            "engine": engine,
            "version": version,
            "indexes": [Index.normal_dict(i) for i in from_json(indexes_json)],
            "primary_key": [c["name"] for c in columns if c["primary_key"]],
        }
    )


def table_view(view: TableView, *, engine: str | None) -> bytes:
    """``TableOut.of(view, engine=...)`` as JSON."""
    columns = view.columns
    return to_json(
        {
            "table_id": view.table_id,
            "name": view.name,
            "synced": view.synced,
            "exists": view.exists,
            "deleted": view.deleted,
            "trashed": view.trashed,
            "columns": {c.name: _column(c) for c in columns},
            "database": view.database,
            "engine": engine,
            "version": view.version,
            "indexes": _indexes(view.indexes),
            "primary_key": [c.name for c in columns if c.primary_key],
        }
    )


def table_then(table: Table, *, engine: str | None) -> bytes:
    """``TableOut.at(table, engine=...)`` as JSON (time travel: the aggregate folded from its events)."""
    return to_json(
        {
            "table_id": table.table_id,
            "name": table.name,
            "synced": table.synced,
            "exists": table.exists,
            "deleted": not table.live,
            "trashed": table.trashed,
            "columns": {c.name: _column(c) for c in table.columns.values()},
            "database": table.database,
            "engine": engine,
            "version": table.version,
            "indexes": _indexes(table.schema.indexes),
            "primary_key": list(table.schema.primary_key),
        }
    )


def table_page(items: list[bytes], *, next_after: UUID | None, headers_of: Response) -> Response:
    """A ``TablePage`` answer as FastAPI writes the model (``{"items":[...],"next_after":...}``, compact,
    as pydantic-core writes it), then the headers the route set on its ``Response`` parameter (``Link``),
    in that order."""
    body = b"".join((b'{"items":[', b",".join(items), b'],"next_after":', to_json(next_after), b"}"))
    out = Response(body, media_type="application/json")
    out.headers.raw.extend(headers_of.headers.raw)
    return out
