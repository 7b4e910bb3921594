"""Around every HTTP request: its request id (the client's ``X-Request-Id`` when usable, a new one
otherwise), bound to the log context and echoed in the answer, and its duration in the metrics by
route template, not by raw path (bounded label values)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemasaga import logcontext
from schemasaga.observability import metrics

HEADER = "x-request-id"
# Visible ASCII, no spaces, capped: it is echoed in a header, written in every log line of the request
# and stored in the metadata of its events.
_USABLE = re.compile(r"[!-~]{1,200}")
UNMATCHED = "unmatched"


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            text: str = value.decode("latin-1")
            if _USABLE.fullmatch(text):
                return text
            break
    return str(uuid.uuid4())


class RequestContext:
    """Pure ASGI (no per-request task or body buffering): it only wraps ``send``."""

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self._routes = routes
        self._templates: dict[int, str] | None = None

    def _template(self, scope: Scope) -> str:
        """The path template of the route that took the request, so ``/v1/tables/{table_id}`` rather than
        one label value per table: FastAPI leaves its route in the scope, Starlette (``/docs``...) only
        its endpoint."""
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str):
            return template
        if self._templates is None:
            self._templates = {
                id(endpoint): str(getattr(r, "path", UNMATCHED))
                for r in self._routes()
                if (endpoint := getattr(r, "endpoint", None)) is not None
            }
        endpoint = scope.get("endpoint")
        return UNMATCHED if endpoint is None else self._templates.get(id(endpoint), UNMATCHED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        tokens: list[Any] = [
            logcontext.request_id.set(request_id),
            logcontext.operation_id.set(None),
            logcontext.correlation_id.set(None),
        ]
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.http_request(
                method=scope["method"],
                route=self._template(scope),
                status=status,
                seconds=time.perf_counter() - started,
            )
            logcontext.correlation_id.reset(tokens[2])
            logcontext.operation_id.reset(tokens[1])
            logcontext.request_id.reset(tokens[0])
