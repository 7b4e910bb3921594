"""The web console's pages: server-rendered pages over the same read side the JSON API answers from.

Routes parse, call the read models, shape rows into plain dictionaries and render a template; there is
no SQL here and no logic in the templates beyond loops and conditions. Jinja2 escapes every value
(autoescape), so an event's data or a column default is shown as text, never as markup. The pages load
nothing from another host: one stylesheet and one small script, served below ``/console/static``. None
of these routes is in the OpenAPI document: they are not part of the JSON API's contract. The forms,
sign-in and the poll are in ``console_forms``; rendering, CSRF and sign-in checks in ``console_base``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from schemasaga.api.causation import Node, causation_tree
from schemasaga.api.console_base import console_reader, not_found, render, when
from schemasaga.api.console_rows import columns_of, difference, event_row, indexes_of, outcome
from schemasaga.api.deps import Reads, ServicesDep
from schemasaga.byodb.ddl import create_statements
from schemasaga.domain.columns import ColumnType
from schemasaga.domain.errors import TableNotFound
from schemasaga.domain.table import Table
from schemasaga.eventstore import RecordedEvent
from schemasaga.services.views import OperationView, TableView

# Tokens required (SCHEMASAGA_AUTH): a read token that no database limits, from the sign-in cookie or an
# `Authorization: Bearer` header (console_base).
router = APIRouter(include_in_schema=False, dependencies=[Depends(console_reader)])

PAGE_SIZE = 50
Limit = Annotated[int, Query(ge=1, le=500)]
TABLE_PREFIX = "Table$"
IN_FLIGHT = frozenset({"pending", "running"})


# -- tables ----------------------------------------------------------------------------------------


def _status_then(table: Table) -> str:
    if table.creation_rejected:
        return "rejected"
    if not table.live:
        return "trashed" if table.trashed else "deleted"
    return "synced" if table.synced else "in flight"


def _status(view: TableView) -> str:
    if view.creation_rejected:
        return "rejected"
    if view.deleted:
        return "trashed" if view.trashed else "deleted"
    return "synced" if view.synced else "in flight"


STATUSES = {
    "synced": "synced",
    "in_flight": "in flight",
    "rejected": "rejected (its creation)",
    "deleted": "deleted or trashed",
    "trashed": "trashed",
}
# The statuses a row shown with (`_status`, `_status_then`) answers each filter; the list's query keeps
# the same rule (queries/views.sql, list_tables): a rejected creation is not a deleted table.
MATCHES = {
    "synced": {"synced"},
    "in_flight": {"in flight"},
    "rejected": {"rejected"},
    "deleted": {"deleted", "trashed"},
    "trashed": {"trashed"},
}


def _moment(text: str) -> datetime | None:
    """A moment from the picker (``datetime-local`` sends no offset: UTC is meant), or from a link."""
    text = text.strip()
    # An offset's `+` left unencoded in a link arrives as a space: `...T10:42:55 00:00`.
    text = text.replace(" ", "+") if "T" in text else text.replace(" ", "T")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/console")
async def tables_page(
    request: Request,
    reads: Reads,
    services: ServicesDep,
    database: str | None = None,
    prefix: str | None = None,
    status: Literal["", "synced", "in_flight", "rejected", "deleted", "trashed"] = "",
    include_deleted: bool = False,
    at: Annotated[str, Query(max_length=64)] = "",
    after: UUID | None = None,
    limit: Limit = PAGE_SIZE,
) -> HTMLResponse:
    database = database or None
    moment = None
    if at.strip():
        try:
            moment = _moment(at)
        except ValueError:
            return render(
                request,
                "not_found.html",
                status_code=400,
                title="Bad moment",
                message=f"{at!r} is not a moment.",
            )
    rows: list[dict[str, Any]]
    if moment is not None:
        # The whole system then: each table as its stream was at that moment (whole transactions).
        tables = await reads.tables_at(
            moment,
            database=database,
            include_deleted=include_deleted or status in ("deleted", "trashed", "rejected"),
            after=after,
            limit=limit,
            name_prefix=prefix or None,
        )
        rows = [
            {
                "table_id": t.table_id,
                "name": t.name,
                "database": t.database,
                "engine": services.connections.known_engine(t.database) or "unknown",
                "status": _status(t) if isinstance(t, TableView) else _status_then(t),
                "columns": len(t.columns),
                "version": t.version,
                "updated_at": t.updated_at if isinstance(t, TableView) else None,
            }
            for t in tables
        ]
        if status:
            rows = [r for r in rows if r["status"] in MATCHES[status]]
    else:
        views = await reads.list_tables(
            database=database,
            include_deleted=include_deleted or status in ("deleted", "trashed", "rejected"),
            after=after,
            limit=limit,
            name_prefix=prefix or None,
            status=status or None,
        )
        rows = [
            {
                "table_id": v.table_id,
                "name": v.name,
                "database": v.database,
                "engine": services.connections.known_engine(v.database) or "unknown",
                "status": _status(v),
                "columns": len(v.columns),
                "version": v.version,
                "updated_at": v.updated_at,
            }
            for v in views
        ]
    databases = [d.name for d in await reads.list_databases()]
    filters = {
        "database": database or "",
        "prefix": prefix or "",
        "status": status,
        "include_deleted": include_deleted,
        "at": at.strip(),
    }
    next_page = None
    if len(rows) == limit:
        # The same filters, from the last table shown on (keyset paging); empty filters left out.
        query = {k: ("true" if v is True else v) for k, v in filters.items() if v}
        next_page = "/console?" + urlencode({**query, "after": rows[-1]["table_id"], "limit": limit})
    return render(
        request,
        "tables.html",
        title="Tables" if moment is None else f"Tables at {when(moment)}",
        rows=rows,
        databases=databases,
        statuses=STATUSES,
        filters=filters,
        at_value=(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if moment else ""),
        next_page=next_page,
        refresh=moment is None and any(r["status"] == "in flight" for r in rows),
    )


@router.get("/console/tables/{table_id}")
async def table_page(
    request: Request,
    table_id: UUID,
    reads: Reads,
    services: ServicesDep,
    version: Annotated[int | None, Query(ge=0)] = None,
    against: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    view = await reads.get_table(table_id)
    if view is None:
        return not_found(request, f"No table with id {table_id}.")
    try:
        current = await reads.table_at(table_id, version=None, moment=None)
        shown = current if version is None else await reads.table_at(table_id, version=version, moment=None)
        other = current if against is None else await reads.table_at(table_id, version=against, moment=None)
    except TableNotFound:
        return not_found(
            request, f"Table {table_id} has no version {version if against is None else against}."
        )
    engine = services.connections.known_engine(view.database)
    events = await reads.table_events(table_id)
    timeline = [dict(event_row(e), outcome=outcome(e)) for e in events]
    operations = await reads.list_operations(table_id=table_id, status=None, limit=PAGE_SIZE)
    return render(
        request,
        "table.html",
        title=f"Table {view.name}",
        table={
            "table_id": view.table_id,
            "name": shown.name,
            "database": view.database,
            "engine": engine or "unknown",
            "status": _status(view),
            "version": view.version,
            "exists": shown.exists,
        },
        shown_version=shown.version,
        against_version=other.version,
        past=shown.version != current.version,
        column_types=[t.value for t in ColumnType],
        ddl=create_statements(engine, shown.schema) if engine and shown.schema.columns else [],
        columns=columns_of(shown),
        indexes=indexes_of(shown),
        pending=[
            {"operation_id": op.operation_id, "kind": op.kind.value, "steps_done": ", ".join(op.steps_done)}
            for op in shown.pending
        ],
        difference=difference(shown, other) if shown.version != other.version else None,
        timeline=timeline,
        operations=[_operation_row(o) for o in operations],
        refresh=not view.synced and version is None,
    )


# -- operations ------------------------------------------------------------------------------------


def _operation_row(op: OperationView) -> dict[str, Any]:
    return {
        "operation_id": op.operation_id,
        "table_id": op.table_id,
        "kind": op.kind,
        "status": op.status,
        "steps_done": ", ".join(op.steps_done),
        "attempts": op.attempts,
        "last_error": op.last_error or "",
        "created_at": op.created_at,
        "undoes": op.undoes,
        "undone_by": op.undone_by,
        # Who holds the lock its last attempt waited for (while it is in flight).
        "blocked_by": op.detail.get("blocked_by") or [] if op.status in IN_FLIGHT else [],
    }


@router.get("/console/operations")
async def operations_page(
    request: Request, reads: Reads, status: Literal["", "pending", "running", "completed", "rejected"] = ""
) -> HTMLResponse:
    operations = await reads.list_operations(table_id=None, status=status or None, limit=PAGE_SIZE * 2)
    return render(
        request,
        "operations.html",
        title="Operations",
        rows=[_operation_row(o) for o in operations],
        status=status,
        refresh=any(o.status in IN_FLIGHT for o in operations),
    )


# -- events ----------------------------------------------------------------------------------------


@router.get("/console/events")
async def events_page(
    request: Request,
    reads: Reads,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Limit = PAGE_SIZE,
    event_type: Annotated[str, Query(max_length=200)] = "",
    correlation: Annotated[str, Query(max_length=200)] = "",
    stream: Annotated[str, Query(max_length=300)] = "",
) -> HTMLResponse:
    filters = {"event_type": event_type.strip(), "correlation": correlation.strip(), "stream": stream.strip()}
    events = await reads.recent_events(
        before=before,
        limit=limit,
        event_type=filters["event_type"] or None,
        correlation_id=filters["correlation"] or None,
        stream=filters["stream"] or None,
    )
    in_flight = before is None and bool(await reads.unsettled_operations())
    query = {k: v for k, v in filters.items() if v}
    return render(
        request,
        "events.html",
        title="Events",
        rows=[event_row(e) for e in events],
        filters=filters,
        next_page=(
            "/console/events?" + urlencode({**query, "before": events[-1].position, "limit": limit})
            if len(events) == limit
            else None
        ),
        refresh=in_flight,
    )


def _stream_row(stream: str) -> dict[str, Any]:
    table_id: UUID | None = None
    if stream.startswith(TABLE_PREFIX):
        try:
            table_id = UUID(stream.removeprefix(TABLE_PREFIX))
        except ValueError:
            table_id = None
    return {"stream": stream, "table_id": table_id}


@router.get("/console/events/{event_id}")
async def event_page(request: Request, event_id: UUID, reads: Reads) -> HTMLResponse:
    event = await reads.get_event(event_id)
    if event is None:
        return not_found(request, f"No event with id {event_id}.")
    correlation_id = event.metadata.get("correlation_id")
    correlated = (
        await reads.correlated_events(str(correlation_id), limit=PAGE_SIZE * 2) if correlation_id else []
    )
    tree = causation_tree(str(correlation_id), correlated) if correlated else None
    # While the event's operation runs, its chain grows: the page follows it.
    operation = (
        await reads.get_operation(UUID(str(event.data["operation_id"]))) if _operation_of(event) else None
    )
    return render(
        request,
        "event.html",
        title=f"Event {event.event_type}",
        event=event_row(event),
        data=event.data,
        metadata=event.metadata,
        schema_version=event.schema_version,
        streams=[_stream_row(s) for s in await reads.event_streams(event_id)],
        tree=None if tree is None else {"request": tree.request, "children": _tree_rows(tree.children)},
        correlation_id=correlation_id,
        refresh=operation is not None and operation.status in IN_FLIGHT,
    )


def _operation_of(event: RecordedEvent) -> bool:
    try:
        UUID(str(event.data.get("operation_id")))
    except ValueError:
        return False
    return True


def _tree_rows(nodes: list[Node]) -> list[dict[str, Any]]:
    return [
        dict(event_row(n.event), outcome=outcome(n.event), children=_tree_rows(n.children)) for n in nodes
    ]


# -- databases -------------------------------------------------------------------------------------


@router.get("/console/databases")
async def databases_page(request: Request, reads: Reads) -> HTMLResponse:
    # Only the registry's non-secret parts: never a URL, a password, or the key id.
    rows = [
        {
            "name": d.name,
            "engine": d.engine,
            "host": d.host or "",
            "port": d.port or "",
            "database": d.database or "",
            "status": d.status,
            "server_version": d.server_version or "",
            "live_tables": d.live_tables,
        }
        for d in await reads.list_databases()
    ]
    return render(request, "databases.html", title="Databases", rows=rows)
