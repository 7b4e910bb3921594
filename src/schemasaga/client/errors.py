"""The client's one exception: an error answer of the service, with its problem details."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_JSON = "application/problem+json"


class SchemasagaError(Exception):
    """The service answered an error. ``code`` is the service's machine code (``table_not_found``,
    ``idempotency_key_reused``...); the other fields are RFC 9457's (``/v1`` answers problem details;
    the demo's routes ``{"status": "error", "error": {...}}``, read into the same fields)."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        detail: str,
        title: str | None = None,
        type: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.type = type
        self.details = details or {}
        self.headers = headers or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> SchemasagaError:
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body and "detail" in body:
            return cls(
                status=int(body.get("status", response.status_code)),
                code=str(body["code"]),
                detail=str(body["detail"]),
                title=body.get("title"),
                type=body.get("type"),
                details=body.get("details"),
                headers=headers,
            )
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            return cls(
                status=response.status_code,
                code=str(error.get("code", "http_error")),
                detail=str(error.get("message", "")),
                details=error.get("details"),
                headers=headers,
            )
        return cls(
            status=response.status_code,
            code="http_error",
            detail=response.text[:500] or response.reason_phrase,
            headers=headers,
        )

    @property
    def retryable(self) -> bool:
        """The service's database was unavailable and nothing was written (503): asking again may work."""
        return self.status == 503
