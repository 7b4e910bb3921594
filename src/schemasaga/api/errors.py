"""Every error answer has the same JSON shape: {"status": "error", "error": {"code", "message"}}."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from procrastinate.exceptions import ConnectorException
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

from schemasaga.domain.errors import DomainError
from schemasaga.eventstore import WrongExpectedVersion

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "error": {"code": code, "message": message}}, status_code=status)


def _describe(errors: list[Any]) -> tuple[int, str, str]:
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", "")
            return 400, "malformed_json", f"request body is not valid JSON: {detail}"
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return 422, "invalid_request", "; ".join(parts)


def _core_unavailable(exc: BaseException) -> JSONResponse:
    # The transaction was rolled back (or never began): nothing was written, the client may retry.
    log.warning("core database unavailable: %s", exc)
    response = error_response(
        503, "core_unavailable", "the service's database is unavailable; nothing was changed, try again"
    )
    response.headers["Retry-After"] = "1"
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe(list(exc.errors()))
        return error_response(status, code, message)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def core_unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _core_unavailable(exc)

    @app.exception_handler(ConnectorException)
    async def job_queue_error(_: Request, exc: ConnectorException) -> JSONResponse:
        # procrastinate wraps the driver's error when deferring the job is what met the outage.
        if isinstance(exc.__cause__, psycopg.OperationalError | psycopg.InterfaceError):
            return _core_unavailable(exc.__cause__)
        log.error("job queue error", exc_info=exc)
        return error_response(500, "internal_error", "the change could not be queued; nothing was changed")

    @app.exception_handler(psycopg.DataError)
    async def unstorable_value(_: Request, exc: psycopg.DataError) -> JSONResponse:
        # The core database refused a value of the request (a NUL character in a name, say): the
        # statement failed, its transaction rolled back, nothing was written.
        log.info("request value refused by the core database: %s", type(exc).__name__)
        return error_response(400, "invalid_request", "the request holds a value that cannot be stored")

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # The same JSON shape as every other error; the details go to the log, not to the caller.
        log.error("unexpected error answering a request", exc_info=exc)
        return error_response(500, "internal_error", "internal error; it has been logged")

    @app.exception_handler(WrongExpectedVersion)
    async def contention(_: Request, exc: WrongExpectedVersion) -> JSONResponse:
        return error_response(409, "concurrent_change", "the table is changing too fast; try again")
