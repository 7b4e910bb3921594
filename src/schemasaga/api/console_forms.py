"""The console's forms and what every page needs besides its own route: sign-in, static files, the
poll that lets a page follow what is in flight, and the actions (create a table, add or remove a
column, scan for drift, repair or adopt).

Every action is a POST carrying the CSRF token (``console_base``), and goes through the same commands as
the JSON API (``TableCommands``): the same validation, the same events, the same sagas. A refusal is
shown on the form with the status the API would answer, and nothing is written. A change accepted
redirects (303) to its table's page, which follows it until it is done.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from schemasaga import logcontext
from schemasaga.api.console_base import (
    ASSETS,
    ConsoleCaller,
    CsrfRefused,
    LoginNeeded,
    console_reader,
    form_of,
    not_found,
    render,
    set_session,
)
from schemasaga.api.deps import MAX_HEADER_VALUE, Reads, ServicesDep
from schemasaga.api.errors import status_of
from schemasaga.api.models import ColumnSpec
from schemasaga.domain.access import Caller, Scope
from schemasaga.domain.columns import ColumnType
from schemasaga.domain.errors import DomainError
from schemasaga.services.views import ReadModels

# No token needed: the way in, and the files the sign-in page itself loads.
public = APIRouter(include_in_schema=False)
actions = APIRouter(include_in_schema=False, dependencies=[Depends(console_reader)])

STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
COLUMN_TYPES = [t.value for t in ColumnType]


def install(app: FastAPI, *pages: APIRouter) -> None:
    """Mount the console: its pages, its forms, and the answers to a missing sign-in or CSRF token."""
    app.include_router(public)
    for router in pages:
        app.include_router(router)
    app.include_router(actions)

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        return RedirectResponse("/console/login?" + urlencode({"next": exc.next_path}), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return render(request, "message.html", status_code=403, title="Refused", message=str(exc))


# -- no token needed -------------------------------------------------------------------------------


@public.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console", status_code=307)


@public.get("/console/static/{name}")
async def static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body = (ASSETS / "static" / name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=300"})


def _local(path: str) -> str:
    """Only a path of the console itself: never another host (`//evil`, `/\\evil`, a scheme)."""
    if path.startswith("/console") and not path.startswith(("//", "/\\")) and "\\" not in path:
        return path
    return "/console"


@public.get("/console/login")
async def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/console") -> Response:
    return render(request, "login.html", title="Sign in", next=_local(next), error=None)


@public.post("/console/login")
async def login(request: Request, services: ServicesDep) -> Response:
    fields = await form_of(request)
    token = fields.get("token", "").strip()
    target = _local(fields.get("next", "/console"))
    caller = await services.tokens.authenticate(token) if token else None
    if caller is None or not _may_read(caller):
        error = (
            "This token is unknown or revoked."
            if caller is None
            else "This token may not read every database."
        )
        return render(request, "login.html", status_code=401, title="Sign in", next=target, error=error)
    response = RedirectResponse(target, status_code=303)
    set_session(request, response, token)
    return response


@public.post("/console/logout")
async def logout(request: Request) -> Response:
    await form_of(request)
    response = RedirectResponse("/console/login", status_code=303)
    set_session(request, response, None)
    return response


def _may_read(caller: Caller) -> bool:
    try:
        caller.require(Scope.READ, every_database=True)
    except DomainError:
        return False
    return True


# -- following what is in flight -------------------------------------------------------------------


@actions.get("/console/poll")
async def poll(reads: Reads) -> JSONResponse:
    """What a page in flight asks every 2 s: the newest event's position (a page older than it is
    fetched again and swapped in) and whether anything is still in flight."""
    newest = await reads.recent_events(before=None, limit=1)
    body = {
        "position": newest[0].position if newest else 0,
        "in_flight": bool(await reads.unsettled_operations()),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# -- actions ---------------------------------------------------------------------------------------


def _metadata(request: Request, caller: Caller) -> dict[str, Any]:
    """Who asked, as the API records it (``deps.request_metadata``); a signed-in token's name."""
    return {
        "request_id": (logcontext.request_id.get() or str(uuid.uuid4()))[:MAX_HEADER_VALUE],
        "actor": caller.name if caller.name is not None else "console",
        "remote_addr": request.client.host if request.client else None,
    }


def _refused(request: Request, exc: DomainError | ValidationError, **context: Any) -> HTMLResponse:
    if isinstance(exc, ValidationError):
        status, message = 422, "; ".join(str(err["msg"]) for err in exc.errors())
    else:
        status, message = status_of(exc), exc.message
    return render(request, "refused.html", status_code=status, title="Refused", error=message, **context)


def _writer(caller: Caller, database: str) -> None:
    caller.require(Scope.WRITE)
    caller.require_database(database)


@actions.post("/console/tables")
async def create_table(request: Request, caller: ConsoleCaller, services: ServicesDep) -> Response:
    fields = await form_of(request)
    name, database = fields.get("name", "").strip(), fields.get("database", "default").strip() or "default"
    back = {"back": "/console", "back_label": "the tables"}
    try:
        _writer(caller, database)
        result = await services.tables.create_table(
            name=name, database=database, metadata=_metadata(request, caller)
        )
    except DomainError as exc:
        return _refused(request, exc, **back)
    return RedirectResponse(f"/console/tables/{result.table_id}", status_code=303)


async def _database_of(reads: ReadModels, table_id: UUID) -> str | None:
    view = await reads.get_table(table_id)
    return None if view is None else view.database


def _default(text: str) -> Any:
    """A default as typed: a JSON literal (`3`, `true`, `"x"`) when it is one, else the text itself."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@actions.post("/console/tables/{table_id}/columns")
async def add_column(
    request: Request, table_id: UUID, caller: ConsoleCaller, reads: Reads, services: ServicesDep
) -> Response:
    fields = await form_of(request)
    database = await _database_of(reads, table_id)
    if database is None:
        return not_found(request, f"No table with id {table_id}.")
    back = {"back": f"/console/tables/{table_id}", "back_label": "the table"}
    try:
        _writer(caller, database)
        spec = ColumnSpec(
            name=fields.get("name", "").strip(),
            type=fields.get("type", ""),
            nullable=fields.get("nullable") == "true",
            default=_default(fields.get("default", "").strip()),
            unique=fields.get("unique") == "true",
        )
        await services.tables.add_column(
            table_id=table_id, column=spec.to_column(), metadata=_metadata(request, caller)
        )
    except (DomainError, ValidationError) as exc:
        return _refused(request, exc, **back)
    return RedirectResponse(f"/console/tables/{table_id}", status_code=303)


@actions.post("/console/tables/{table_id}/columns/{name}/remove")
async def remove_column(
    request: Request, table_id: UUID, name: str, caller: ConsoleCaller, reads: Reads, services: ServicesDep
) -> Response:
    await form_of(request)
    database = await _database_of(reads, table_id)
    if database is None:
        return not_found(request, f"No table with id {table_id}.")
    try:
        _writer(caller, database)
        await services.tables.remove_column(table_id=table_id, name=name, metadata=_metadata(request, caller))
    except DomainError as exc:
        return _refused(request, exc, back=f"/console/tables/{table_id}", back_label="the table")
    return RedirectResponse(f"/console/tables/{table_id}", status_code=303)


@actions.post("/console/tables/{table_id}/reconcile")
async def reconcile(
    request: Request, table_id: UUID, caller: ConsoleCaller, reads: Reads, services: ServicesDep
) -> Response:
    fields = await form_of(request)
    database = await _database_of(reads, table_id)
    if database is None:
        return not_found(request, f"No table with id {table_id}.")
    strategy = fields.get("strategy", "")
    back: dict[str, Any] = {
        "back": f"/console/databases/{quote(database)}/drift",
        "back_label": "the drift report",
    }
    if strategy not in ("repair", "adopt"):
        error = f"{strategy!r} is neither repair nor adopt"
        return render(request, "refused.html", status_code=422, title="Refused", error=error, **back)
    try:
        _writer(caller, database)
        await services.tables.reconcile(
            table_id=table_id, strategy=strategy, metadata=_metadata(request, caller)
        )
    except DomainError as exc:
        return _refused(request, exc, **back)
    return RedirectResponse(f"/console/tables/{table_id}", status_code=303)


@actions.post("/console/databases/{name}/check")
async def check_database(
    request: Request, name: str, caller: ConsoleCaller, services: ServicesDep
) -> Response:
    """Try the database now (as ``POST /v1/databases/{name}/check``: a change of its status is
    recorded), and show the outcome."""
    await form_of(request)
    back: dict[str, Any] = {"back": "/console/databases", "back_label": "the databases"}
    try:
        _writer(caller, name)
        result = await services.databases.check(name=name, metadata=_metadata(request, caller))
    except DomainError as exc:
        return _refused(request, exc, **back)
    if result.reachable:
        message = f"{name} answers: {result.server_version or 'version unknown'}."
    else:
        message = f"{name} does not answer: {result.error or result.status}."
    return render(request, "message.html", title=f"Check of {name}", message=message, **back)


@actions.get("/console/databases/{name}/drift")
async def drift_page(request: Request, name: str, caller: ConsoleCaller, services: ServicesDep) -> Response:
    """The drift report of one database: a scan, read-only (it records nothing), as
    ``GET /v1/databases/{name}/drift`` answers it."""
    try:
        report = await services.drift.scan(name)
    except DomainError as exc:
        return _refused(request, exc, back="/console/databases", back_label="the databases")
    rows = [
        {
            "table_id": t.table_id,
            "name": t.name,
            "issues": [
                ", ".join(f"{k}: {v}" for k, v in issue.items() if v is not None) for issue in t.issues
            ],
        }
        for t in report.drifted
    ]
    return render(
        request,
        "drift.html",
        title=f"Drift of {name}",
        database=name,
        checked=report.checked,
        in_flight=report.in_flight,
        rows=rows,
        unmanaged=report.unmanaged_tables,
    )
