"""Turning traces on in a process: an OTLP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, and a span for every statement run on a user's database
(SQLAlchemy's cursor events, for every engine of the process). The spans themselves are made where the
work is: ``api/middleware.py`` (the request), ``jobs/app.py`` (the job), the saga runner (each step).
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.engine import Engine

from schemasaga.tracing import tracer

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_SPAN = "schemasaga_span"
_STATEMENT_CAP = 1000


class TracingUnavailable(Exception):
    """An OTLP endpoint is configured but the ``tracing`` extra is not installed."""


def configure() -> bool:
    """Export spans over OTLP/HTTP when an endpoint is configured (the standard ``OTEL_*`` variables
    say where and how); whether tracing is on."""
    if not any(os.environ.get(name) for name in ENDPOINT_ENVS):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the tracing extra is not installed: "
            "pip install 'schemasaga[tracing]'"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "schemasaga")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrument_statements()
    return True


def shutdown() -> None:
    """Send the spans still buffered (at the process's end)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()


_instrumented = False


def instrument_statements() -> None:
    """A span for each statement of every SQLAlchemy engine (the users' databases), child of the
    current span: the saga step running it (the thread it runs in carries the step's context)."""
    global _instrumented
    if _instrumented:
        return
    _instrumented = True
    event.listen(Engine, "before_cursor_execute", _before)
    event.listen(Engine, "after_cursor_execute", _after)
    event.listen(Engine, "handle_error", _failed)


def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    span = tracer().start_span(
        "statement",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "db.system": conn.dialect.name,
            # The statement only, never its parameters.
            "db.statement": statement[:_STATEMENT_CAP],
        },
    )
    if context is not None:
        setattr(context, _SPAN, span)


def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    span = getattr(context, _SPAN, None)
    if span is not None:
        span.end()


def _failed(exception_context: Any) -> None:
    span = getattr(exception_context.execution_context, _SPAN, None)
    if span is not None:
        span.set_status(
            trace.Status(trace.StatusCode.ERROR, type(exception_context.original_exception).__name__)
        )
        span.end()
