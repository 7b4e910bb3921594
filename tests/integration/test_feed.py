"""The live event feed (``GET /v1/events/stream``) on the real service, in-process: what it delivers, in
which order, where it resumes, what it holds back while a lower position is uncommitted, and what it
refuses. The in-process transport collects a whole answer, so each request ends its stream with
``?timeout=``."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from schemasaga.bootstrap import Container
from schemasaga.client.stream import SseParser
from schemasaga.eventstore import NewEvent
from tests.conftest import error_of
from tests.integration.conftest import wait_synced


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The events of a finished stream, each with the SSE ``id`` it was sent with."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    parser = SseParser()
    events = []
    for line in response.text.split("\n"):
        event = parser.line(line)
        if event is not None:
            events.append({**event.model_dump(mode="json"), "sse_id": parser.last_id})
    return events


def logged(core: str) -> list[tuple[int, str]]:
    with psycopg.connect(core) as conn:
        rows = conn.execute(
            "SELECT position, event_type FROM event_store_events ORDER BY position"
        ).fetchall()
    return [(int(p), str(t)) for p, t in rows]


async def test_the_feed_sends_the_log_in_order_with_positions_as_ids_and_resumes_after_one(
    client: httpx.AsyncClient, core_db: str
) -> None:
    created = (await client.post("/table/create", json={"name": "feed_people"})).json()
    table_id = created["table"]["table_id"]
    await wait_synced(client, table_id)
    await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    await wait_synced(client, table_id)

    everything = sse(await client.get("/v1/events/stream", params={"timeout": 0.5}))
    assert [(e["position"], e["event_type"]) for e in everything] == logged(core_db)
    assert all(e["sse_id"] == e["position"] for e in everything)
    table_events = [e for e in everything if e["stream"] == f"Table${table_id}"]
    assert [e["version"] for e in table_events] == list(range(len(table_events)))

    # Resumed after an event (Last-Event-ID wins over ?after=): the rest, nothing twice.
    middle = everything[len(everything) // 2]["position"]
    resumed = sse(
        await client.get(
            "/v1/events/stream",
            params={"timeout": 0.5, "after": 0},
            headers={"Last-Event-ID": str(middle)},
        )
    )
    assert [e["position"] for e in resumed] == [e["position"] for e in everything if e["position"] > middle]
    by_after = sse(await client.get("/v1/events/stream", params={"timeout": 0.5, "after": middle}))
    assert by_after == resumed

    # Filters: the table's events, of some types.
    mine = sse(
        await client.get(
            "/v1/events/stream",
            params=[
                ("timeout", "0.5"),
                ("table_id", table_id),
                ("type", "TableCreated"),
                ("type", "TableChanged"),
            ],
        )
    )
    assert [e["event_type"] for e in mine] == ["TableCreated", "TableChanged"]
    correlated = sse(
        await client.get(
            "/v1/events/stream", params={"timeout": 0.5, "correlation_id": created["operation_id"]}
        )
    )
    assert correlated and {e["metadata"]["correlation_id"] for e in correlated} == {created["operation_id"]}


async def test_a_later_position_waits_for_an_earlier_one_still_uncommitted(
    service: Container, client: httpx.AsyncClient, core_db: str
) -> None:
    store = service.store
    start = (await store.append("Feed$start", [NewEvent("TableCreated", {})]))[0].position
    async with await psycopg.AsyncConnection.connect(core_db) as slow:
        # Takes the lower position and stays open; then a later position commits.
        (early,) = await store.append("Feed$slow", [NewEvent("TableCreated", {"n": 1})], conn=slow)
        (late,) = await store.append("Feed$fast", [NewEvent("TableCreated", {"n": 2})])
        assert early.position < late.position
        held = sse(await client.get("/v1/events/stream", params={"timeout": 0.5, "after": start}))
        # Sending `late` now would make a client resuming after it skip `early` for good.
        assert held == []
        await slow.commit()
    both = sse(await client.get("/v1/events/stream", params={"timeout": 0.5, "after": start}))
    assert [e["position"] for e in both] == [early.position, late.position]


async def test_bad_requests_are_refused_before_the_stream_starts_and_write_nothing(
    client: httpx.AsyncClient, core_db: str
) -> None:
    before = logged(core_db)
    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        ({"type": "TableInvented"}, {}, 422, "unknown_event_type"),
        ({}, {"Last-Event-ID": "twelve"}, 422, "invalid_last_event_id"),
        ({}, {"Last-Event-ID": "-3"}, 422, "invalid_last_event_id"),
        ({"after": "-1"}, {}, 422, "invalid_last_event_id"),
        ({"table_id": "5b0b0a4e-8a61-4c1e-9a57-111111111111"}, {}, 404, "table_not_found"),
        ({"correlation_id": "a\x00b"}, {}, 400, "invalid_request"),
        ({"timeout": "0"}, {}, 422, "invalid_request"),
    ]
    for params, headers, status, code in cases:
        r = await client.get("/v1/events/stream", params={"timeout": 0.2, **params}, headers=headers)
        assert r.status_code == status, (params, headers, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert error_of(r)["code"] == code, (params, r.text)
    assert logged(core_db) == before
