"""The web console (read-only): server-rendered pages over the same read side the JSON API answers from.

Routes parse, call the read models, shape rows into plain dictionaries and render a template; there is
no SQL here and no logic in the templates beyond loops and conditions. Jinja2 escapes every value
(autoescape), so an event's data or a column default is shown as text, never as markup. The pages load
nothing from another host: one stylesheet, served below ``/console/static``. None of these routes is
in the OpenAPI document: they are not part of the JSON API's contract.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

import jinja2
from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from schemasaga.api.deps import Reads, ServicesDep, console_reader
from schemasaga.domain.columns import Column
from schemasaga.domain.errors import TableNotFound
from schemasaga.domain.table import Table
from schemasaga.eventstore import RecordedEvent
from schemasaga.services.views import OperationView, TableView

# Tokens required (SCHEMASAGA_AUTH): the console needs a read token that no database limits, sent as
# `Authorization: Bearer` (by a proxy in front of a browser); there is no sign-in page yet.
router = APIRouter(include_in_schema=False, dependencies=[Depends(console_reader)])

ASSETS = Path(__file__).resolve().parent.parent / "console"
PAGE_SIZE = 50
Limit = Annotated[int, Query(ge=1, le=500)]
# A page in flight reloads itself this often (seconds), and only then.
REFRESH_SECONDS = 2
TABLE_PREFIX = "Table$"
IN_FLIGHT = frozenset({"pending", "running"})


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ASSETS / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = _pretty_json
    env.filters["when"] = _when
    return env


def _render(name: str, *, status_code: int = 200, refresh: bool = False, **context: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(refresh=REFRESH_SECONDS if refresh else None, **context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _not_found(message: str) -> HTMLResponse:
    return _render("not_found.html", status_code=404, title="Not found", message=message)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)


@router.get("/console/static/console.css")
async def stylesheet() -> Response:
    css = (ASSETS / "static" / "console.css").read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=300"})


# -- tables ----------------------------------------------------------------------------------------


def _status(view: TableView) -> str:
    if view.deleted:
        return "deleted"
    return "synced" if view.synced else "in flight"


@router.get("/console")
async def tables_page(
    reads: Reads,
    services: ServicesDep,
    database: str | None = None,
    prefix: str | None = None,
    include_deleted: bool = False,
    after: UUID | None = None,
    limit: Limit = PAGE_SIZE,
) -> HTMLResponse:
    database = database or None
    views = await reads.list_tables(
        database=database,
        include_deleted=include_deleted,
        after=after,
        limit=limit,
        name_prefix=prefix or None,
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
        }
        for v in views
    ]
    databases = [d.name for d in await reads.list_databases()]
    filters = {"database": database or "", "prefix": prefix or "", "include_deleted": include_deleted}
    next_page = None
    if len(rows) == limit:
        # The same filters, from the last table shown on (keyset paging); empty filters left out.
        query = {k: ("true" if v is True else v) for k, v in filters.items() if v}
        next_page = "/console?" + urlencode({**query, "after": rows[-1]["table_id"], "limit": limit})
    return _render(
        "tables.html",
        title="Tables",
        rows=rows,
        databases=databases,
        filters=filters,
        next_page=next_page,
        refresh=any(r["status"] == "in flight" for r in rows),
    )


def _column_row(column: Column, *, state: str | None) -> dict[str, Any]:
    return {
        "name": column.name,
        "type": column.type.value,
        "nullable": column.nullable,
        "default": None if column.default is None else json.dumps(column.default, ensure_ascii=False),
        "unique": column.unique,
        "primary_key": column.primary_key,
        "state": state,
    }


def _confirmed_names(table: Table) -> dict[str, str]:
    """Intended column name -> its confirmed name, for the columns that changes in flight rename."""
    renamed: dict[str, str] = {}
    for op in table.pending:
        for old, new in op.change.column_renames.items():
            renamed[new] = renamed.pop(old, old)
    return renamed


def _columns(table: Table) -> list[dict[str, Any]]:
    """The intended columns, each marked when a change in flight adds, renames or changes it, then the
    confirmed columns a change in flight removes."""
    confirmed = table.confirmed_columns
    renamed = _confirmed_names(table)
    rows = []
    for name, column in table.columns.items():
        was = renamed.get(name, name)
        before = confirmed.get(was)
        state: str | None
        if before is None:
            state = "being added"
        elif was != name:
            state = f"being renamed from {was}"
        else:
            state = None if before == column else "being changed"
        rows.append(_column_row(column, state=state))
    kept = {renamed.get(n, n) for n in table.columns}
    rows += [_column_row(c, state="being removed") for name, c in confirmed.items() if name not in kept]
    return rows


def _indexes(table: Table) -> list[dict[str, Any]]:
    confirmed = {i.name: i for i in table.confirmed.indexes}
    intended = {i.name: i for i in table.schema.indexes}
    rows = [
        {
            "name": i.name,
            "columns": ", ".join(i.columns),
            "unique": i.unique,
            "state": None if confirmed.get(name) == i else "being added",
        }
        for name, i in intended.items()
    ]
    rows += [
        {"name": i.name, "columns": ", ".join(i.columns), "unique": i.unique, "state": "being removed"}
        for name, i in confirmed.items()
        if name not in intended
    ]
    return rows


COLUMN_FIELDS = ("type", "nullable", "default", "unique", "primary_key")


def _difference(shown: Table, current: Table) -> dict[str, list[Any]]:
    """What changed in the intended columns from the shown version to the current one."""
    then, now = shown.columns, current.columns
    changed = []
    for name in then.keys() & now.keys():
        a, b = then[name].to_dict(), now[name].to_dict()
        fields = [f"{f}: {json.dumps(a[f])} → {json.dumps(b[f])}" for f in COLUMN_FIELDS if a[f] != b[f]]
        if fields:
            changed.append({"name": name, "fields": fields})
    return {
        "added": [n for n in now if n not in then],
        "removed": [n for n in then if n not in now],
        "changed": sorted(changed, key=lambda c: str(c["name"])),
    }


def _outcome(event: RecordedEvent) -> str:
    data = event.data
    kind = event.event_type
    if kind.endswith("Rejected"):
        return f"rejected: {data.get('reason', '')}"
    if kind.endswith("Confirmed"):
        return "confirmed"
    if kind == "SagaStepCompleted":
        return f"step {data.get('step', '')} done"
    if kind == "SagaAttemptFailed":
        return f"attempt {data.get('attempt', '')} failed: {data.get('error', '')}"
    if kind == "SagaCompensationStarted":
        return f"compensating: {data.get('reason', '')}"
    if kind == "TableDriftDetected":
        return f"{len(data.get('issues', []))} drift issue(s)"
    return "accepted"


def _event_row(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "position": event.position,
        "version": event.version,
        "created_at": event.created_at,
        "actor": event.metadata.get("actor", ""),
        "correlation_id": event.metadata.get("correlation_id"),
        "operation_id": event.data.get("operation_id"),
    }


@router.get("/console/tables/{table_id}")
async def table_page(
    table_id: UUID,
    reads: Reads,
    services: ServicesDep,
    version: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    view = await reads.get_table(table_id)
    if view is None:
        return _not_found(f"No table with id {table_id}.")
    try:
        current = await reads.table_at(table_id, version=None, moment=None)
        shown = current if version is None else await reads.table_at(table_id, version=version, moment=None)
    except TableNotFound:
        return _not_found(f"Table {table_id} has no version {version}.")
    events = await reads.table_events(table_id)
    timeline = [dict(_event_row(e), outcome=_outcome(e)) for e in events]
    operations = await reads.list_operations(table_id=table_id, status=None, limit=PAGE_SIZE)
    return _render(
        "table.html",
        title=f"Table {view.name}",
        table={
            "table_id": view.table_id,
            "name": shown.name,
            "database": view.database,
            "engine": services.connections.known_engine(view.database) or "unknown",
            "status": _status(view),
            "version": view.version,
            "exists": shown.exists,
        },
        shown_version=shown.version,
        past=shown.version != current.version,
        columns=_columns(shown),
        indexes=_indexes(shown),
        pending=[
            {"operation_id": op.operation_id, "kind": op.kind.value, "steps_done": ", ".join(op.steps_done)}
            for op in shown.pending
        ],
        difference=_difference(shown, current) if shown.version != current.version else None,
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
    }


@router.get("/console/operations")
async def operations_page(
    reads: Reads, status: Literal["", "pending", "running", "completed", "rejected"] = ""
) -> HTMLResponse:
    operations = await reads.list_operations(table_id=None, status=status or None, limit=PAGE_SIZE * 2)
    return _render(
        "operations.html",
        title="Operations",
        rows=[_operation_row(o) for o in operations],
        status=status,
        refresh=any(o.status in IN_FLIGHT for o in operations),
    )


# -- events ----------------------------------------------------------------------------------------


@router.get("/console/events")
async def events_page(
    reads: Reads, before: Annotated[int | None, Query(ge=1)] = None, limit: Limit = PAGE_SIZE
) -> HTMLResponse:
    events = await reads.recent_events(before=before, limit=limit)
    in_flight = before is None and bool(await reads.unsettled_operations())
    return _render(
        "events.html",
        title="Events",
        rows=[_event_row(e) for e in events],
        next_page=(
            "/console/events?" + urlencode({"before": events[-1].position, "limit": limit})
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
async def event_page(event_id: UUID, reads: Reads) -> HTMLResponse:
    event = await reads.get_event(event_id)
    if event is None:
        return _not_found(f"No event with id {event_id}.")
    correlation_id = event.metadata.get("correlation_id")
    correlated = (
        await reads.correlated_events(str(correlation_id), limit=PAGE_SIZE * 2) if correlation_id else []
    )
    return _render(
        "event.html",
        title=f"Event {event.event_type}",
        event=_event_row(event),
        data=event.data,
        metadata=event.metadata,
        schema_version=event.schema_version,
        streams=[_stream_row(s) for s in await reads.event_streams(event_id)],
        correlated=[_event_row(e) for e in correlated if e.event_id != event.event_id],
    )


# -- databases -------------------------------------------------------------------------------------


@router.get("/console/databases")
async def databases_page(reads: Reads) -> HTMLResponse:
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
    return _render("databases.html", title="Databases", rows=rows)
