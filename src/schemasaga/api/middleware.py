"""Around every HTTP request: its request id (the client's ``X-Request-Id`` when usable, a new one
otherwise), bound to the log context and echoed in the answer, and its duration in the metrics by
route template, not by raw path (bounded label values)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemasaga import logcontext, tracing
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
        server_span: list[trace.Span] = []  # the request's, once known

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = request_id
                for span in server_span:  # while it is open; with the operation the request accepted, say
                    span.set_attributes({f"schemasaga.{k}": v for k, v in logcontext.current().items()})
            await send(message)

        started = time.perf_counter()
        method = scope["method"]
        if not tracing.enabled():
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self._done(scope, method, status, started, tokens)
            return
        # FastAPI's own telemetry makes the request's server span when tracing is on; without it (an
        # older FastAPI) this makes one, continuing the client's traceparent.
        current = trace.get_current_span()
        own = not current.is_recording()
        carrier = {
            name.decode(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == b"traceparent"
        }
        with (
            tracing.continued(carrier if own else None),
            tracing.tracer().start_as_current_span(method, kind=trace.SpanKind.SERVER)
            if own
            else contextlib.nullcontext(current) as span,
        ):
            if span.is_recording():
                server_span.append(span)
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = self._done(scope, method, status, started, tokens)
                if own and span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attributes(
                        {
                            "http.request.method": method,
                            "http.route": route,
                            "http.response.status_code": status,
                        }
                    )

    def _done(self, scope: Scope, method: str, status: int, started: float, tokens: list[Any]) -> str:
        """Record the request's duration and unbind its ids; returns its route template."""
        route = self._template(scope)
        metrics.http_request(method=method, route=route, status=status, seconds=time.perf_counter() - started)
        logcontext.correlation_id.reset(tokens[2])
        logcontext.operation_id.reset(tokens[1])
        logcontext.request_id.reset(tokens[0])
        return route
