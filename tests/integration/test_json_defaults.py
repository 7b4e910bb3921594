"""A JSON default's object keys come back from the core database in jsonb's order (shorter keys first), not
in the order the client wrote them. The saga re-plans from the recorded event before its DDL: a default in
another key order must still plan the same change, on every engine, and drift must not see a difference."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from tests.integration.conftest import running_service, wait_operation

ENGINES = [
    pytest.param("byodb_pg_url", id="postgresql"),
    pytest.param("byodb_mysql_url", id="mysql", marks=pytest.mark.mariadb),
    pytest.param("byodb_sqlite_url", id="sqlite"),
]

# Keys out of jsonb's order at every level, a key repeated under another nesting.
DEFAULT = {"zeta": 1, "a": {"yy": [1, {"bb": 2, "a": 3}], "b": None}, "mm": "x"}


@pytest.fixture(params=ENGINES)
def byodb_url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(request.param)
    return value


@pytest.fixture
async def service_and_client(
    settings_factory: Callable[..., Settings], byodb_url: str
) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    async with running_service(settings_factory(byodb_url)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            yield container, c


async def settled(client: httpx.AsyncClient, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    return await wait_operation(client, r.json()["operation_id"])


async def test_a_json_default_in_any_key_order_is_created_added_and_shows_no_drift(
    service_and_client: tuple[Container, httpx.AsyncClient],
) -> None:
    _, client = service_and_client
    body = {"name": "docs", "columns": [{"name": "doc", "type": "json", "default": DEFAULT}]}
    created = await settled(client, await client.post("/v1/tables", json=body))
    assert created["status"] == "completed", created["last_error"]
    table_id = created["table_id"]

    column = {"name": "more", "type": "json", "default": {"zz": 1, "b": 2}}
    added = await settled(client, await client.post(f"/v1/tables/{table_id}/columns", json=column))
    assert added["status"] == "completed", added["last_error"]

    shown = (await client.get(f"/v1/tables/{table_id}")).json()
    defaults = {name: c["default"] for name, c in shown["columns"].items()}
    assert defaults["doc"] == DEFAULT
    assert defaults["more"] == {"zz": 1, "b": 2}
    drift = await client.get("/v1/databases/default/drift")
    assert drift.status_code == 200, drift.text
    report = drift.json()
    assert (report["clean"], report["checked"], report["tables"]) == (True, 1, []), report
