"""Request and response models, separate from the domain's classes: the OpenAPI document a client can be
generated from. Requests refuse unknown fields (a typo must never change what a request does)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from schemasaga.domain.access import Scope
from schemasaga.domain.columns import Column, Index, column_type, index_name
from schemasaga.domain.database import DEFAULT_DATABASE
from schemasaga.domain.errors import InvalidColumn, InvalidTableId
from schemasaga.domain.table import Table
from schemasaga.services.drift import DriftReport
from schemasaga.services.tables import UNSET, Accepted, ColumnPatch, Planned
from schemasaga.services.tokens import TokenView
from schemasaga.services.trash import TrashItem
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


class ColumnSpec(Strict):
    name: str
    type: str
    nullable: bool = True
    default: JsonValue = Field(default=None, description="a JSON literal of the column's type; null: none")
    unique: bool = False

    def to_column(self) -> Column:
        return Column(
            name=self.name,
            type=column_type(self.type),
            nullable=self.nullable,
            default=self.default,
            unique=self.unique,
        )


AddColumnRequest = ColumnSpec


class IndexSpec(Strict):
    columns: list[str] = Field(min_length=1)
    unique: bool = False
    name: str | None = Field(default=None, description="generated when not given")

    def to_index(self, table: str) -> Index:
        columns = tuple(self.columns)
        return Index(
            name=self.name or index_name(table, columns, unique=self.unique),
            columns=columns,
            unique=self.unique,
        )


class NewTableRequest(Strict):
    name: str
    database: str = DEFAULT_DATABASE
    columns: list[ColumnSpec] = Field(default_factory=list, description="after the four default columns")
    indexes: list[IndexSpec] = Field(default_factory=list)


class RenameTableRequest(Strict):
    name: str


class ColumnPatchRequest(Strict):
    """The fields to change; a field left out stays as it is (``"default": null`` drops the default)."""

    name: str | None = None
    type: str | None = None
    nullable: bool | None = None
    default: JsonValue = None
    unique: bool | None = None

    def to_patch(self) -> ColumnPatch:
        given = self.model_fields_set
        if ("name" in given and self.name is None) or ("type" in given and self.type is None):
            raise InvalidColumn("a column's name and type cannot be null")
        if ("nullable" in given and self.nullable is None) or ("unique" in given and self.unique is None):
            raise InvalidColumn("nullable and unique are true or false")
        return ColumnPatch(
            name=self.name if "name" in given else UNSET,
            type=column_type(self.type) if self.type is not None else UNSET,
            nullable=self.nullable if "nullable" in given else UNSET,
            default=self.default if "default" in given else UNSET,
            unique=self.unique if "unique" in given else UNSET,
        )


class TrackTableRequest(Strict):
    name: str
    database: str = DEFAULT_DATABASE


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
    return Column(name=name, type=column_type(type_), nullable=nullable)


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
    default: JsonValue = Field(description="a JSON literal of the column's type; null: no default")
    primary_key: bool
    unique: bool

    @classmethod
    def of(cls, column: Column) -> ColumnOut:
        return cls(
            name=column.name,
            type=column.type.value,
            nullable=column.nullable,
            default=column.default,
            primary_key=column.primary_key,
            unique=column.unique,
        )


class IndexOut(Answer):
    name: str
    columns: list[str]
    unique: bool

    @classmethod
    def of(cls, index: Index) -> IndexOut:
        return cls(name=index.name, columns=list(index.columns), unique=index.unique)


def columns_out(columns: Iterable[Column]) -> dict[str, ColumnOut]:
    """By name, in the order the columns were added (the four defaults first)."""
    return {c.name: ColumnOut.of(c) for c in columns}


class TableOut(Answer):
    table_id: UUID
    name: str
    synced: bool = Field(description="false while a change is in flight")
    exists: bool = Field(description="whether the physical table exists")
    deleted: bool = Field(description="deleted, or being deleted")
    trashed: bool = Field(description="deleted, with its rows in the trash (restorable: see /v1/trash)")
    columns: dict[str, ColumnOut] = Field(description="the intended columns, in the order they were added")
    database: str
    engine: str | None = Field(description="null while this process does not know the database")
    version: int = Field(description="the version of the table's stream this state is at (its ETag)")
    indexes: list[IndexOut] = Field(description="the intended indexes, in the order they were added")
    primary_key: list[str]

    @classmethod
    def of(cls, view: TableView, *, engine: str | None) -> TableOut:
        return cls(
            indexes=[IndexOut.of(i) for i in view.indexes],
            primary_key=[c.name for c in view.columns if c.primary_key],
            table_id=view.table_id,
            name=view.name,
            synced=view.synced,
            exists=view.exists,
            deleted=view.deleted,
            trashed=view.trashed,
            columns=columns_out(view.columns),
            database=view.database,
            engine=engine,
            version=view.version,
        )

    @classmethod
    def at(cls, table: Table, *, engine: str | None) -> TableOut:
        return cls(
            indexes=[IndexOut.of(i) for i in table.schema.indexes],
            primary_key=list(table.schema.primary_key),
            table_id=table.table_id,
            name=table.name,
            synced=table.synced,
            exists=table.exists,
            deleted=not table.live,
            trashed=table.trashed,
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
    warnings: list[str] = Field(
        default_factory=list,
        description="what to know of the accepted change (a removed column whose values cannot be kept)",
    )

    @classmethod
    def of(cls, accepted: Accepted) -> AcceptedOut:
        return cls(
            table_id=accepted.table_id,
            operation_id=accepted.operation_id,
            operation_url=f"/v1/operations/{accepted.operation_id}",
            warnings=list(accepted.warnings),
        )


class StatementOut(Answer):
    sql: str
    lock: str = Field(description="the lock it takes, in the engine's words")
    rewrites: bool = Field(description="whether it rewrites every row of the table")
    scans: bool = Field(description="whether it reads every row of the table")
    transactional: bool


class PlanOut(Answer):
    """What a change would run (``?dry_run=true``): nothing was written."""

    status: Literal["planned"] = "planned"
    table_id: UUID | None
    engine: str
    statements: list[StatementOut]
    warnings: list[str]
    columns: dict[str, ColumnOut] = Field(description="the table's columns after the change")
    indexes: list[IndexOut] = Field(description="the table's indexes after the change")

    @classmethod
    def of(cls, planned: Planned) -> PlanOut:
        plan = planned.plan
        return cls(
            table_id=planned.table_id,
            engine=plan.engine,
            statements=[StatementOut(**s.to_dict()) for s in plan.statements],
            warnings=list(plan.warnings),
            columns=columns_out(planned.after.columns),
            indexes=[IndexOut.of(i) for i in planned.after.indexes],
        )


class EventOut(Answer):
    event_id: UUID
    event_type: str
    version: int | None
    position: int
    created_at: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]


class FeedEventOut(EventOut):
    """An event of the live feed (and of a webhook's delivery): ``stream`` is the stream it was appended
    to, ``version`` its version there."""

    stream: str | None


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
    undoes: UUID | None = Field(None, description="the operation this one undoes (an undo)")
    undone_by: UUID | None = Field(None, description="the undo that undid this operation, once it completed")


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
    next_after: str | None = Field(None, description="the `after` of the next page; null on the last one")


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


# -- tokens ----------------------------------------------------------------------------------------


class NewTokenRequest(Strict):
    name: str = Field(
        description="1 to 63 lower-case letters, digits, `_`, `.` and `-`, starting with a letter"
    )
    scope: Literal["read", "write", "admin"]
    databases: list[str] | None = Field(
        default=None, description="the only databases the token may touch (none given: every one)"
    )


class TokenOut(Answer):
    """A token as listed: never its secret."""

    name: str
    scope: Scope
    databases: list[str] | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, view: TokenView) -> TokenOut:
        return cls(
            name=view.name,
            scope=view.scope,
            databases=view.databases,
            created_at=view.created_at,
            revoked_at=view.revoked_at,
        )


class NewTokenOut(TokenOut):
    token: str | None = Field(
        description="the token, shown this once only: it is stored hashed (null in the replay of a request "
        "with the same Idempotency-Key)"
    )


class TokenList(Answer):
    items: list[TokenOut]
    next_after: str | None = Field(None, description="the `after` of the next page; null on the last one")


class EventPage(Answer):
    items: list[EventOut]
    next_after: UUID | None = Field(
        None, description="the `after` of the next page (the last event's id); null when none follows yet"
    )


class RestoreRequest(Strict):
    """Restore under another name (the table's or column's own when left out)."""

    name: str | None = None


class TrashOut(Answer):
    """A table or column in the trash."""

    trash_id: UUID
    kind: Literal["table", "column"]
    database: str
    table_id: UUID
    table: str = Field(description="the table's name when it was trashed")
    column: str | None = Field(description="the removed column (kind column)")
    rows: int | None = Field(description="the rows kept (null: the database could not be asked now)")
    status: Literal["trashed", "restoring", "purging", "restored", "purged"]
    trashed_at: datetime
    purge_at: datetime = Field(description="when its retention ends and it is purged")

    @classmethod
    def of(cls, item: TrashItem) -> TrashOut:
        v = item.view
        return cls(
            trash_id=v.trash_id,
            kind=v.kind,  # type: ignore[arg-type]
            database=v.database,
            table_id=v.table_id,
            table=v.table,
            column=v.column,
            rows=item.rows,
            status=v.status,  # type: ignore[arg-type]
            trashed_at=v.trashed_at,
            purge_at=v.purge_at,
        )


# -- webhooks ----------------------------------------------------------------------------------------


class NewWebhookRequest(Strict):
    url: str = Field(
        description="http(s) URL the deliveries are POSTed to (SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS)"
    )
    events: list[str] = Field(description='event types to deliver, or ["*"] for every one')
    secret: str | None = Field(
        default=None,
        description="the HMAC key of the signatures (16 to 200 characters); generated when absent",
    )


class WebhookOut(Answer):
    """A webhook as listed: never its secret."""

    webhook_id: UUID
    url: str
    events: list[str]
    created_at: datetime


class NewWebhookOut(WebhookOut):
    secret: str | None = Field(
        description="the generated secret, in this answer only (null when the request gave one)"
    )


class WebhookList(Answer):
    items: list[WebhookOut]


class DeliveryOut(Answer):
    position: int
    event_id: UUID
    event_type: str
    stream: str | None
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryList(Answer):
    items: list[DeliveryOut]
