"""Request and response models, separate from the domain's classes: the OpenAPI document a client can be
generated from. Requests refuse unknown fields (a typo must never change what a request does)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemasaga.domain.columns import Column, ColumnType
from schemasaga.domain.database import DEFAULT_DATABASE
from schemasaga.domain.errors import InvalidColumn, InvalidTableId
from schemasaga.domain.table import Table
from schemasaga.services.drift import DriftReport
from schemasaga.services.tables import Accepted
from schemasaga.services.views import TableView

# -- requests --------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateTableRequest(Strict):
    name: str
    database: str = DEFAULT_DATABASE


class TableIdRequest(Strict):
    table_id: str


class DemoColumnSpec(Strict):
    name: str
    type: str | None = Field(default=None, description="no type: remove the column")
    nullable: bool = True


class ColumnRequest(Strict):
    table_id: str
    column: DemoColumnSpec


class AddColumnRequest(Strict):
    name: str
    type: str
    nullable: bool = True


class ReconcileRequest(Strict):
    strategy: Literal["repair", "adopt"]


class RegisterDatabaseRequest(Strict):
    name: str
    url: str

    def __repr__(self) -> str:  # never the URL
        return f"RegisterDatabaseRequest(name={self.name!r})"

    __str__ = __repr__


def parse_table_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise InvalidTableId(f"table_id {raw!r} is not a UUID") from None


def parse_column(name: str, type_: str, *, nullable: bool) -> Column:
    try:
        column_type = ColumnType(type_)
    except ValueError:
        supported = ", ".join(t.value for t in ColumnType)
        raise InvalidColumn(f"unknown column type {type_!r}; supported: {supported}") from None
    return Column(name=name, type=column_type, nullable=nullable)


# -- answers ---------------------------------------------------------------------------------------


class Answer(BaseModel):
    """Every field of an answer is in it, a defaulted one too (``"status": "ok"``): its schema in the
    OpenAPI document requires them all. An answer can be read from the attributes of a service's result
    (``Model.model_validate(result)``)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True, from_attributes=True)


class ColumnOut(Answer):
    name: str
    type: str
    nullable: bool
    default: str | None
    primary_key: bool

    @classmethod
    def of(cls, column: Column) -> ColumnOut:
        return cls(
            name=column.name,
            type=column.type.value,
            nullable=column.nullable,
            default=column.default,
            primary_key=column.primary_key,
        )


def columns_out(columns: Iterable[Column]) -> dict[str, ColumnOut]:
    """By name, in the order the columns were added (the four defaults first)."""
    return {c.name: ColumnOut.of(c) for c in columns}


class TableOut(Answer):
    table_id: UUID
    name: str
    synced: bool = Field(description="false while a change is in flight")
    exists: bool = Field(description="whether the physical table exists")
    deleted: bool = Field(description="deleted, or being deleted")
    columns: dict[str, ColumnOut] = Field(description="the intended columns, in the order they were added")
    database: str
    engine: str | None = Field(description="null while this process does not know the database")
    version: int = Field(description="the version of the table's stream this state is at")

    @classmethod
    def of(cls, view: TableView, *, engine: str | None) -> TableOut:
        return cls(
            table_id=view.table_id,
            name=view.name,
            synced=view.synced,
            exists=view.exists,
            deleted=view.deleted,
            columns=columns_out(view.columns),
            database=view.database,
            engine=engine,
            version=view.version,
        )

    @classmethod
    def at(cls, table: Table, *, engine: str | None) -> TableOut:
        return cls(
            table_id=table.table_id,
            name=table.name,
            synced=table.synced,
            exists=table.exists,
            deleted=not table.live,
            columns=columns_out(table.columns.values()),
            database=table.database,
            engine=engine,
            version=table.version,
        )


class TablePage(Answer):
    items: list[TableOut]
    next_after: UUID | None = Field(description="the `after` of the next page; null on the last one")


class DemoTableRef(Answer):
    table_id: str


class DemoCreated(Answer):
    status: Literal["ok"] = "ok"
    table: DemoTableRef
    operation_id: str


class DemoOk(Answer):
    status: Literal["ok"] = "ok"
    operation_id: str


class DemoShow(Answer):
    table: TableOut


class AcceptedOut(Answer):
    status: Literal["accepted"] = "accepted"
    table_id: UUID
    operation_id: UUID
    operation_url: str = Field(description="poll this for the outcome")

    @classmethod
    def of(cls, accepted: Accepted) -> AcceptedOut:
        return cls(
            table_id=accepted.table_id,
            operation_id=accepted.operation_id,
            operation_url=f"/v1/operations/{accepted.operation_id}",
        )


class EventOut(Answer):
    event_id: UUID
    event_type: str
    version: int | None
    position: int
    created_at: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]


class OperationOut(Answer):
    operation_id: UUID
    table_id: UUID
    kind: str
    status: Literal["pending", "running", "completed", "rejected"]
    attempts: int
    steps_done: list[str]
    last_error: str | None
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class DriftIssueOut(BaseModel):  # not an Answer: the drift route leaves out its null fields
    issue: str = Field(description="missing_table, missing_column, extra_column, name_mismatch, ...")
    column: str | None = None
    expected: Any = None
    actual: Any = None
    detail: str | None = None


class TableDriftOut(Answer):
    table_id: UUID
    name: str
    issues: list[DriftIssueOut]


class DriftReportOut(Answer):
    database: str
    checked: int
    in_flight: int
    clean: bool
    tables: list[TableDriftOut]
    unmanaged_tables: list[str]

    @classmethod
    def of(cls, report: DriftReport) -> DriftReportOut:
        return cls(
            database=report.database,
            checked=report.checked,
            in_flight=report.in_flight,
            clean=report.clean,
            tables=[
                TableDriftOut(
                    table_id=t.table_id, name=t.name, issues=[DriftIssueOut(**issue) for issue in t.issues]
                )
                for t in report.drifted
            ],
            unmanaged_tables=report.unmanaged_tables,
        )


class DatabaseOut(Answer):
    """A registered database: never its URL, nor its password."""

    name: str
    engine: str
    driver: str | None
    host: str | None
    port: int | None
    database: str | None
    username: str | None
    source: Literal["config", "api"]
    status: str
    server_version: str | None
    live_tables: int
    key_id: str
    created_at: datetime
    updated_at: datetime


class DatabaseList(Answer):
    items: list[DatabaseOut]


class CheckOut(Answer):
    name: str
    reachable: bool
    status: str
    server_version: str | None
    error: str | None


class OkOut(Answer):
    status: Literal["ok"] = "ok"


class HealthOut(Answer):
    status: Literal["ok"] = "ok"
    version: str
