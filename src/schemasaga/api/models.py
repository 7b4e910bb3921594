"""Request and response models, separate from the domain classes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemasaga.catalog import DEFAULT_DATABASE
from schemasaga.domain.columns import Column, ColumnType
from schemasaga.domain.errors import DomainError, InvalidColumn


class Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class CreateTableRequest(Strict):
    name: str
    database: str = DEFAULT_DATABASE


class TableIdRequest(Strict):
    table_id: str


class ColumnSpec(Strict):
    name: str
    type: str | None = None
    nullable: bool = True


class ColumnRequest(Strict):
    table_id: str
    column: ColumnSpec


class InvalidTableId(DomainError):
    code = "invalid_table_id"
    status = 422


def parse_table_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise InvalidTableId(f"table_id {raw!r} is not a UUID") from None


def parse_column(spec: ColumnSpec) -> Column:
    try:
        column_type = ColumnType(spec.type or "")
    except ValueError:
        supported = ", ".join(t.value for t in ColumnType)
        raise InvalidColumn(f"unknown column type {spec.type!r}; supported: {supported}") from None
    return Column(name=spec.name, type=column_type, nullable=spec.nullable)


class OperationOut(BaseModel):
    operation_id: UUID
    table_id: UUID
    kind: str
    status: str
    attempts: int
    steps_done: list[str]
    last_error: str | None
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class AddColumnRequest(Strict):
    name: str
    type: str
    nullable: bool = True


class AcceptedOut(BaseModel):
    status: str = "accepted"
    table_id: UUID
    operation_id: UUID
    operation_url: str = Field(description="poll this for the outcome")
