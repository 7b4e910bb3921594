"""OpenTelemetry traces, optional: one trace from the HTTP request through the saga's job to the
statements on the user's database.

Only the OpenTelemetry API is used here (a dependency): until a process installs a tracer provider
(``observability.tracing.configure``, with the ``tracing`` extra), every span is a no-op and no trace
context is passed on. The request's trace reaches the job through the job's ``traceparent`` argument
(W3C trace context), deferred in the request's transaction, so the job's spans are children of the
request's even in another process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def enabled() -> bool:
    """Whether a tracer provider is installed (without one, spans are no-ops: skip making them on the
    hot path)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracer() -> trace.Tracer:
    return trace.get_tracer("schemasaga")


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``; None when no span records (tracing off)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued(carrier: dict[str, str] | None) -> Iterator[None]:
    """Within the block, spans are children of the span ``carrier`` names (``{"traceparent": ...}``, an
    HTTP request's headers); a missing or malformed one starts a new trace."""
    if not carrier:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
