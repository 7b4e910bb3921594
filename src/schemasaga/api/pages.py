"""Long answers written straight to JSON: a page of tables, each with its columns and indexes.

A page of 100 tables of about 30 columns is some 3,000 column objects: built as ``ColumnOut`` models,
validated, then serialized by FastAPI's ``response_model``, that was most of the list's time. Here the
answer is built as plain dicts in the shape of ``TableOut`` and serialized by pydantic-core's own JSON
writer, the one FastAPI uses for a route's response model: the same bytes, without the models. The
routes keep their ``response_model``, so the OpenAPI document still declares the answer (``TablePage``);
tests/integration/test_list_fast_path.py compares both paths byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from pydantic_core import to_json
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


def table_listing(t: TableListing, *, engine: str | None) -> dict[str, Any]:
    """``TableOut.of`` of the same table's :class:`TableView` as a dict: its columns are already in
    ``ColumnOut``'s shape and field order (``Column.to_dict``'s)."""
    columns = t.columns
    return {
        "table_id": t.table_id,
        "name": t.name,
        "synced": t.synced,
        "exists": t.exists,
        "deleted": t.deleted,
        "trashed": t.trashed,
        "columns": {c["name"]: c for c in columns},
        "database": t.database,
        "engine": engine,
        "version": t.version,
        "indexes": t.indexes,
        "primary_key": [c["name"] for c in columns if c["primary_key"]],
    }


def table_view(view: TableView, *, engine: str | None) -> dict[str, Any]:
    """``TableOut.of(view, engine=...)`` as the dict its JSON is written from (field order kept)."""
    columns = view.columns
    return {
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


def table_then(table: Table, *, engine: str | None) -> dict[str, Any]:
    """``TableOut.at(table, engine=...)`` as a dict (time travel: the aggregate folded from its events)."""
    return {
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


def table_page(items: list[dict[str, Any]], *, next_after: UUID | None, headers_of: Response) -> Response:
    """A ``TablePage`` answer as FastAPI writes the model: its JSON, then the headers the route set on its
    ``Response`` parameter (``Link``), in that order."""
    out = Response(to_json({"items": items, "next_after": next_after}), media_type="application/json")
    out.headers.raw.extend(headers_of.headers.raw)
    return out
