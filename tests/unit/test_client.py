"""The client's own logic on an in-memory transport: a change keeps its Idempotency-Key across retries,
and error answers of both shapes become SchemasagaError."""

from __future__ import annotations

import httpx
import pytest

from schemasaga.client import Client, SchemasagaError, _shared

ACCEPTED = {
    "status": "accepted",
    "table_id": "5a4c0f6c-0000-4000-8000-000000000001",
    "operation_id": "5a4c0f6c-0000-4000-8000-000000000002",
    "operation_url": "/v1/operations/5a4c0f6c-0000-4000-8000-000000000002",
}


def test_a_change_is_retried_with_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shared, "RETRY_DELAYS", (0.0,))
    keys: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        if len(keys) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(keys) == 2:
            problem = {
                "type": "urn:schemasaga:problem:core_unavailable",
                "title": "Core unavailable",
                "status": 503,
                "detail": "try again",
                "code": "core_unavailable",
            }
            return httpx.Response(503, json=problem, headers={"content-type": "application/problem+json"})
        return httpx.Response(202, json=ACCEPTED)

    with Client("http://t", transport=httpx.MockTransport(answer)) as client:
        accepted = client.tables.create("t")
    assert str(accepted.operation_id) == ACCEPTED["operation_id"]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_errors_of_both_shapes() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/"):
            problem = {
                "type": "urn:schemasaga:problem:table_not_found",
                "title": "Table not found",
                "status": 404,
                "detail": "no table",
                "code": "table_not_found",
            }
            return httpx.Response(404, json=problem, headers={"content-type": "application/problem+json"})
        return httpx.Response(409, json={"status": "error", "error": {"code": "name_taken", "message": "m"}})

    with Client("http://t", transport=httpx.MockTransport(answer), retries=0) as client:
        with pytest.raises(SchemasagaError) as v1:
            client.tables.show("5a4c0f6c-0000-4000-8000-000000000001")
        assert (v1.value.status, v1.value.code, v1.value.title, v1.value.detail) == (
            404,
            "table_not_found",
            "Table not found",
            "no table",
        )
        demo = SchemasagaError.from_response(client.http.post("/table/create", json={}))
    assert (demo.status, demo.code, demo.detail) == (409, "name_taken", "m")
