"""Error answers, and which HTTP status each domain error gets (decided here alone).

``/v1`` answers errors as RFC 9457 problem details (``application/problem+json``: ``type``, ``title``,
``status``, ``detail``, plus our ``code`` and, when there are some, ``details``); every other route (the
demo's four, ``/healthz``...) keeps the demo's ``{"status": "error", "error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, NoReturn

import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from procrastinate.exceptions import ConnectorException
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from schemasaga.api.deps import authenticate, bearer
from schemasaga.byodb.errors import TransientByodbError
from schemasaga.domain import errors as e
from schemasaga.eventstore import WrongExpectedVersion

log = logging.getLogger(__name__)

# The status of each domain error; a subclass takes its closest listed ancestor's.
STATUS: dict[type, int] = {
    e.DomainError: 422,
    e.InvalidName: 422,
    e.InvalidColumn: 422,
    e.InvalidTableId: 422,
    e.InvalidCursor: 422,
    e.PrimaryKeyColumn: 422,
    e.InvalidDefault: 422,
    e.InvalidIndex: 422,
    e.UnsupportedChange: 422,
    e.VersionMismatch: 412,
    e.IndexNotFound: 404,
    e.IndexExists: 409,
    e.InvalidDatabaseUrl: 422,
    e.UnsupportedDriver: 422,
    e.DatabaseUnreachable: 422,
    e.BadCredentials: 422,
    e.DatabaseNotAllowed: 403,
    e.TableNotFound: 404,
    e.TrashNotFound: 404,
    e.TrashPurged: 410,
    e.ColumnNotFound: 404,
    e.OperationNotFound: 404,
    e.UnknownEventType: 422,
    e.InvalidLastEventId: 422,
    e.InvalidWebhook: 422,
    e.WebhookTargetNotAllowed: 422,
    e.WebhookNotFound: 404,
    e.DatabaseNotFound: 404,
    e.ColumnExists: 409,
    e.NameTaken: 409,
    e.TableExistsUnmanaged: 409,
    e.IncompatibleRows: 409,
    e.TableGone: 409,
    e.IllegalTransition: 409,
    e.ConcurrentChange: 409,
    e.OperationNotCompleted: 409,
    e.AlreadyUndone: 409,
    e.UndoConflict: 409,
    e.UndoUnsupported: 409,
    e.DatabaseExists: 409,
    e.DatabaseInUse: 409,
    e.DatabaseConfigured: 409,
    e.DatabaseAlreadyRegistered: 409,
    e.NotAuthenticated: 401,
    e.Forbidden: 403,
    e.InvalidTokenScope: 422,
    e.TokenExists: 409,
    e.TokenNotFound: 404,
    e.DatabaseUnavailable: 503,
    e.CredentialsUnavailable: 503,
    e.InvalidIdempotencyKey: 400,
    e.IdempotencyKeyReused: 422,
    e.IdempotencyKeyInFlight: 409,
}


def status_of(error: e.DomainError) -> int:
    return next(STATUS[cls] for cls in type(error).__mro__ if cls in STATUS)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    """The shape of an error answer outside ``/v1`` (the demo's)."""

    # Its schema requires `status` too: every error answer has it.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    status: Literal["error"] = "error"
    error: ErrorDetail


PROBLEM_TYPE = "urn:schemasaga:problem:"
PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An error answer of ``/v1``: RFC 9457 problem details, with our machine ``code``."""

    type: str = Field(description="`urn:schemasaga:problem:<code>`: one type per code")
    title: str = Field(description="a short summary of the type (the same for every answer of a code)")
    status: int = Field(description="the HTTP status of the answer")
    detail: str = Field(description="what went wrong this time, for a person")
    code: str = Field(description="machine-readable, stable: `table_not_found`, `idempotency_key_reused`...")
    details: dict[str, Any] | None = Field(
        default=None, description="more about this error (rows refused by a change, for one)"
    )


_DESCRIPTIONS = {
    400: "Malformed JSON, or a value the service's database cannot take (a NUL character, say); nothing "
    "was written.",
    401: "No token, or an unknown or revoked one (`Authorization: Bearer <token>`, when tokens are "
    "required); nothing was written.",
    403: "Outside what the operator allows, or outside the token's scope or databases; nothing was written.",
    404: "Not found.",
    409: "In conflict with the current state; nothing was written.",
    410: "Gone: what was asked for was purged; nothing was written.",
    412: "`If-Match` named a version of the table other than its current one; nothing was written.",
    422: "Invalid request (unknown or missing field, invalid value or name); nothing was written.",
    503: "The service's database (or the user's database asked about) is unavailable; nothing was "
    "written, try again (see Retry-After).",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route outside ``/v1``, for its OpenAPI description."""
    return {status: {"model": ErrorOut, "description": _DESCRIPTIONS[status]} for status in statuses}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a ``/v1`` route, for its OpenAPI description: problem details."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            # FastAPI puts the model under application/json; `problem_media_types` moves it here.
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }


def problem_media_types(openapi: dict[str, Any]) -> dict[str, Any]:
    """Every error answer of a ``/v1`` operation documented as ``application/problem+json`` only."""
    for path, operations in openapi.get("paths", {}).items():
        if not is_problem_path(path):
            continue
        for operation in operations.values():
            for status, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                if status[:1] in ("4", "5") and PROBLEM_JSON in content and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    return openapi


def is_problem_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def title_of(code: str) -> str:
    return code.replace("_", " ").capitalize()


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: dict[str, Any] | None = None,
    *,
    path: str = "",
) -> JSONResponse:
    """The error answer for a request of ``path``: problem details under ``/v1``, the demo's shape
    elsewhere."""
    if is_problem_path(path):
        problem = Problem(
            type=PROBLEM_TYPE + code,
            title=title_of(code),
            status=status,
            detail=message,
            code=code,
            details=details,
        )
        return JSONResponse(
            problem.model_dump(exclude_none=True),
            status_code=status,
            headers=headers,
            media_type=PROBLEM_JSON,
        )
    body = ErrorOut(error=ErrorDetail(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _describe(errors: list[Any]) -> tuple[int, str, str]:
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", "")
            return 400, "malformed_json", f"request body is not valid JSON: {detail}"
    unknown = [_where(err) for err in errors if err.get("type") == "extra_forbidden"]
    if unknown:
        fields = ", ".join(repr(name) for name in unknown)
        return 422, "unknown_field", f"unknown field {fields} in the request body; nothing was changed"
    parts = [f"{_where(err)}: {err.get('msg', 'invalid')}" for err in errors]
    return 422, "invalid_request", "; ".join(parts)


def _where(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


def core_unavailable_response(request: Request, exc: BaseException) -> JSONResponse:
    # The transaction was rolled back (or never began): nothing was written, the client may retry.
    log.warning("core database unavailable: %s", exc)
    return error_response(
        503,
        "core_unavailable",
        "the service's database is unavailable; nothing was changed, try again",
        headers={"Retry-After": "1"},
        path=request.url.path,
    )


# The methods a 405's Allow may name.
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class MethodRefused(HTTPException):
    """A 405 whose ``Allow`` is known where it is raised (see ``refuse_other_methods``)."""


def refuse_other_methods(router: APIRouter, path: str, served: set[str]) -> None:
    """Answer 405 for every method of the literal ``path`` but ``served``, where a ``{param}`` sibling
    would otherwise take them (``PATCH /v1/tables/track`` is not ``PATCH /v1/tables/{table_id}`` with a
    bad id). Register it before the ``{param}`` routes."""
    allow = ", ".join(m for m in _METHODS if m in served)

    async def refuse(request: Request) -> NoReturn:
        raise MethodRefused(405, headers={"Allow": allow})

    others = [m for m in _METHODS if m not in served]
    router.add_api_route(path, refuse, methods=others, include_in_schema=False, response_model=None)


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers. Starlette's 405 names only the methods of the first
    route whose path matched, while one path may be served by several routes (``GET`` and ``POST
    /v1/tables``): the ``Allow`` of a 405 must list them all (RFC 9110)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def _domain_error(request: Request, exc: e.DomainError) -> JSONResponse:
    # RFC 9110: a 401 says how to authenticate.
    headers = (
        {"WWW-Authenticate": 'Bearer realm="schemasaga"'} if isinstance(exc, e.NotAuthenticated) else None
    )
    return error_response(
        status_of(exc), exc.code, exc.message, headers=headers, details=exc.details, path=request.url.path
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.DomainError)
    async def domain_error(request: Request, exc: e.DomainError) -> JSONResponse:
        return _domain_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe(list(exc.errors()))
        if status == 400:
            # FastAPI parses a JSON body before it runs the dependencies: a caller without a token learns
            # nothing of its body, not even that it is not JSON.
            try:
                await authenticate(request, await bearer(request))
            except e.NotAuthenticated as refused:
                return _domain_error(request, refused)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                return core_unavailable_response(request, exc)
        return error_response(status, code, message, path=request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Keep the exception's headers: a 405 says which methods are allowed.
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and not isinstance(exc, MethodRefused):
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers=headers, path=request.url.path)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def core_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return core_unavailable_response(request, exc)

    @app.exception_handler(TransientByodbError)
    async def user_database_unavailable(request: Request, exc: TransientByodbError) -> JSONResponse:
        # A user's database the request had to read could not be used now: unreachable, or a new
        # connection reached another database than the one registered (byodb.verify). Nothing was
        # written; the client may retry. The message names the database, never its URL.
        log.warning("user database unavailable while answering a request: %s", exc)
        return _domain_error(request, e.DatabaseUnavailable(str(exc)))

    @app.exception_handler(ConnectorException)
    async def job_queue_error(request: Request, exc: ConnectorException) -> JSONResponse:
        # procrastinate wraps the driver's error when deferring the job is what met the outage.
        if isinstance(exc.__cause__, psycopg.OperationalError | psycopg.InterfaceError):
            return core_unavailable_response(request, exc.__cause__)
        log.error("job queue error", exc_info=exc)
        message = "the change could not be queued; nothing was changed"
        return error_response(500, "internal_error", message, path=request.url.path)

    @app.exception_handler(psycopg.DataError)
    async def unstorable_value(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # The core database refused a value of the request (a NUL character in a name, say), in a
        # command or in a look-up: the statement failed, its transaction rolled back, nothing was written.
        log.info("request value refused by the core database: %s", type(exc).__name__)
        return error_response(
            400,
            "invalid_request",
            "the request holds a value the service's database cannot take",
            path=request.url.path,
        )

    @app.exception_handler(WrongExpectedVersion)
    async def contention(request: Request, exc: WrongExpectedVersion) -> JSONResponse:
        return error_response(
            409, "concurrent_change", "the table is changing too fast; try again", path=request.url.path
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The same JSON shape as every other error; the details go to the log, not to the caller.
        log.error("unexpected error answering a request", exc_info=exc)
        message = "internal error; it has been logged"
        return error_response(500, "internal_error", message, path=request.url.path)
