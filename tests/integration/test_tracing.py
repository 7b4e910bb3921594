"""Traces (OpenTelemetry, optional): one trace from the HTTP request through the saga's job to the
statements on the user's database, recorded by the SDK's in-memory exporter.

The tracer provider is the process's (OpenTelemetry sets it once): installed by this module's fixture
and left in place, its exporter stopped at the module's end so that later tests record nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemasaga.observability.tracing import instrument_statements
from tests.integration.conftest import wait_operation

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrument_statements()
    yield exporter
    exporter.shutdown()


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[int]:
    by_id = {s.context.span_id: s for s in spans}
    found = []
    parent = span.parent
    while parent is not None:
        found.append(parent.span_id)
        above = by_id.get(parent.span_id)
        parent = above.parent if above is not None else None
    return found


async def test_one_trace_from_the_request_to_the_statements(
    exporter: InMemorySpanExporter, client: httpx.AsyncClient
) -> None:
    exporter.clear()
    # The client's own trace is continued.
    r = await client.post(
        "/table/create",
        json={"name": "traced"},
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
    )
    assert r.status_code == 200
    operation_id = r.json()["operation_id"]
    assert (await wait_operation(client, operation_id))["status"] == "completed"

    spans = list(exporter.get_finished_spans())
    request = one(spans, "POST /table/create")
    trace_id = request.context.trace_id
    assert f"{trace_id:032x}" == CLIENT_TRACE
    assert request.parent is not None and f"{request.parent.span_id:016x}" == CLIENT_SPAN
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/table/create"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["schemasaga.operation_id"] == operation_id
    assert request.attributes["schemasaga.correlation_id"] == operation_id

    traced = [s for s in spans if s.context.trace_id == trace_id]
    # The job, deferred in the request's transaction, continues the request's trace.
    job = one(traced, "saga job")
    assert request.context.span_id in ancestors(job, traced)  # (FastAPI's endpoint span between)
    assert job.attributes is not None and job.attributes["schemasaga.correlation_id"] == operation_id
    # Its steps, and the statements each ran on the user's database.
    for name in ("saga step create_table", "saga step verify"):
        step = one(traced, name)
        assert step.parent is not None and step.parent.span_id == job.context.span_id
    create = one(traced, "saga step create_table")
    statements = [
        s for s in traced if s.name == "statement" and s.parent and s.parent.span_id == create.context.span_id
    ]
    assert any("CREATE TABLE" in str((s.attributes or {}).get("db.statement")) for s in statements)
    assert all((s.attributes or {}).get("db.system") == "postgresql" for s in statements)
