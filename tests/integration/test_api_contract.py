"""The HTTP contract where the review found it wrong: a typo must never change what a request does,
columns come back in the order they were added, deleted tables say so, and every error keeps its
headers."""

from __future__ import annotations

import json

import httpx
import pytest

from schemasaga.bootstrap import Container
from tests.conftest import error_of
from tests.integration.conftest import wait_operation, wait_synced
from tests.integration.test_saga_flow import counts, create_table, physical_columns


async def settled(client: httpx.AsyncClient, name: str) -> str:
    table_id = await create_table(client, name)
    await wait_synced(client, table_id)
    return table_id


async def add(client: httpx.AsyncClient, table_id: str, name: str, type_: str = "integer") -> None:
    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": name, "type": type_}}
    )
    assert r.status_code == 200, r.text
    await wait_operation(client, r.json()["operation_id"])


async def test_a_typo_in_a_field_name_is_refused_and_removes_nothing(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    table_id = await settled(client, "typo")
    await add(client, table_id, "age")
    before = await counts(service)
    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "typ": "bigint"}}
    )
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "unknown_field"
    assert "column.typ" in error_of(r)["message"]
    assert await counts(service) == before
    assert "age" in (physical_columns(byodb_pg_url, "typo") or {})
    # The demo's contract stays: a column with a name and no type is removed.
    r = await client.post("/table/column", json={"table_id": table_id, "column": {"name": "age"}})
    assert r.status_code == 200, r.text
    await wait_operation(client, r.json()["operation_id"])
    assert "age" not in (physical_columns(byodb_pg_url, "typo") or {})


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/table/create", {"name": "t", "databse": "default"}, "databse"),
        ("POST", "/table/show", {"table_id": "x", "extra": 1}, "extra"),
        ("POST", "/v1/tables", {"name": "t", "colums": []}, "colums"),
        ("POST", "/v1/tables/{id}/columns", {"name": "a", "type": "text", "nulable": False}, "nulable"),
        ("POST", "/v1/tables/{id}/reconcile", {"strategy": "repair", "force": True}, "force"),
        ("POST", "/v1/databases", {"name": "d", "url": "sqlite:////tmp/x.db", "pasword": "x"}, "pasword"),
    ],
)
async def test_every_body_refuses_unknown_fields(
    client: httpx.AsyncClient, service: Container, method: str, path: str, body: dict[str, object], field: str
) -> None:
    table_id = await settled(client, "fields")
    before = await counts(service)
    r = await client.request(method, path.replace("{id}", table_id), json=body)
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "unknown_field" and field in error_of(r)["message"]
    assert await counts(service) == before


async def test_columns_come_back_in_the_order_they_were_added(client: httpx.AsyncClient) -> None:
    table_id = await settled(client, "ordered")
    for name in ("zeta", "age", "b", "a_much_longer_name", "x"):
        await add(client, table_id, name)
    expected = ["id", "name", "created_at", "updated_at", "zeta", "age", "b", "a_much_longer_name", "x"]
    shown = (await client.post("/table/show", json={"table_id": table_id})).json()["table"]
    assert list(shown["columns"]) == expected
    assert list((await client.get(f"/v1/tables/{table_id}")).json()["columns"]) == expected
    listed = (await client.get("/v1/tables")).json()["items"]
    assert [list(t["columns"]) for t in listed if t["table_id"] == table_id] == [expected]
    # As it was, too.
    r = await client.get(f"/v1/tables/{table_id}", params={"at_version": 100})
    assert list(r.json()["columns"]) == expected


async def test_a_deleted_table_says_so(client: httpx.AsyncClient) -> None:
    table_id = await settled(client, "doomed")
    shown = (await client.post("/table/show", json={"table_id": table_id})).json()["table"]
    assert shown["deleted"] is False
    r = await client.post("/table/delete", json={"table_id": table_id})
    await wait_operation(client, r.json()["operation_id"])
    shown = (await client.post("/table/show", json={"table_id": table_id})).json()["table"]
    assert (shown["deleted"], shown["exists"]) == (True, False)
    assert (await client.get(f"/v1/tables/{table_id}")).json()["deleted"] is True
    listed = (await client.get("/v1/tables", params={"include_deleted": True})).json()["items"]
    assert [t["deleted"] for t in listed if t["table_id"] == table_id] == [True]
    assert table_id not in [t["table_id"] for t in (await client.get("/v1/tables")).json()["items"]]


async def test_a_wrong_method_keeps_its_allow_header(client: httpx.AsyncClient) -> None:
    r = await client.get("/table/create")
    assert r.status_code == 405
    assert error_of(r)["code"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/tables", "GET, POST"),
        ("OPTIONS", "/v1/tables", "GET, POST"),
        ("PUT", "/v1/tables/{id}", "DELETE, GET, PATCH"),
        ("PUT", "/v1/databases", "GET, POST"),
        ("POST", "/v1/databases/default", "DELETE, GET"),
        ("GET", "/v1/tables/{id}/columns/age", "DELETE, PATCH"),
        # A literal beside `{table_id}`: the fuzz found PATCH /v1/tables/track answering 422 (bad id).
        ("PATCH", "/v1/tables/track", "POST"),
        ("GET", "/v1/tables/track", "POST"),
        ("DELETE", "/v1/tables/track", "POST"),
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    # Found by the OpenAPI fuzz: a path served by several routes named only the first route's methods.
    r = await client.request(method, path.replace("{id}", "00000000-0000-0000-0000-000000000000"))
    assert r.status_code == 405, r.text
    assert error_of(r)["code"] == "method_not_allowed"
    assert r.headers["allow"] == allow


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/v1/tables?database=a%00b", "/v1/tables"),
        ("GET", "/v1/databases/a%00b", "/v1/databases/{name}"),
        ("POST", "/v1/databases/a%00b/check", "/v1/databases/{name}/check"),
        ("DELETE", "/v1/databases/a%00b", "/v1/databases/{name}"),
    ],
)
async def test_a_nul_character_in_a_look_up_is_a_declared_400(
    client: httpx.AsyncClient, service: Container, method: str, path: str, template: str
) -> None:
    # PostgreSQL refuses a NUL in text, in a query's parameter as in a row; these routes answered that
    # 400 without declaring it (found probing the routes the OpenAPI fuzz covers).
    before = await counts(service)
    r = await client.request(method, path)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "urn:schemasaga:problem:invalid_request",
        "title": "Invalid request",
        "status": 400,
        "detail": "the request holds a value the service's database cannot take",
        "code": "invalid_request",
    }
    assert await counts(service) == before
    operation = (await client.get("/openapi.json")).json()["paths"][template][method.lower()]
    assert operation["responses"]["400"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }


async def test_the_openapi_document_declares_every_answer(client: httpx.AsyncClient) -> None:
    """Every operation declares its success with a schema, and every error it declares has the real
    error shape: FastAPI's own validation error model is nowhere (its 422s are ours)."""
    document = (await client.get("/openapi.json")).json()
    assert "ValidationError" not in json.dumps(document)
    schemas = document["components"]["schemas"]
    assert schemas["ErrorOut"]["required"] == ["status", "error"]
    assert schemas["ErrorOut"]["properties"]["status"]["const"] == "error"
    assert schemas["ErrorOut"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert schemas["ErrorDetail"]["required"] == ["code", "message"]
    error = {"$ref": "#/components/schemas/ErrorOut"}
    problem = {"$ref": "#/components/schemas/Problem"}
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail", "code"]
    operations = [(m, p, op) for p, item in document["paths"].items() for m, op in item.items()]
    assert len(operations) == 41
    assert document["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["token"]["description"],
    }
    for method, path, operation in operations:
        answers = operation["responses"]
        if path != "/healthz":  # every route but the health check may need a token
            assert {"401", "403"} <= set(answers), (method, path)
            assert operation["security"] == [{"token": []}], (method, path)
        successes = [s for s in answers if s.startswith("2")]
        parameters = {p["name"] for p in operation.get("parameters", [])}
        plan = {"$ref": "#/components/schemas/PlanOut"}
        operation_out = {"$ref": "#/components/schemas/OperationOut"}
        if "dry_run" in parameters:  # a change: 202 accepted, or 200 and its plan or finished operation
            assert sorted(successes) == ["200", "202"], (method, path, successes)
            assert answers["200"]["content"]["application/json"]["schema"]["anyOf"] == [plan, operation_out]
            assert "wait" in parameters and "Idempotency-Key" in parameters, (method, path)
        elif "wait" in parameters and method != "get":  # a change with no plan: 202, or 200 when finished
            assert sorted(successes) == ["200", "202"], (method, path, successes)
            assert answers["200"]["content"]["application/json"]["schema"] == operation_out
        else:
            assert len(successes) == 1, (method, path, successes)
        for success in successes:
            # The live feed answers server-sent events; every other success is JSON.
            media = "text/event-stream" if path == "/v1/events/stream" else "application/json"
            assert list(answers[success]["content"]) == [media], (method, path)
            assert answers[success]["content"][media]["schema"], (method, path)
        for status, answer in answers.items():
            if status.startswith("2"):
                continue
            if path.startswith("/v1/"):  # RFC 9457 problem details
                assert answer["content"] == {"application/problem+json": {"schema": problem}}, (method, path)
            else:
                assert answer["content"] == {"application/json": {"schema": error}}, (method, path, status)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in answers, (method, path)
        if "requestBody" in operation:
            assert "400" in answers, (method, path)  # malformed JSON
