"""A JSON default's object keys come back from the core database in jsonb's order (shorter keys first), not
in the order the client wrote them. The saga re-plans from the recorded event before its DDL: a default in
another key order must still plan the same change, on every engine, and drift must not see a difference."""

from __future__ import annotations

from typing import Any

import httpx

from schemasaga.bootstrap import Container
from tests.integration import test_undo
from tests.integration.conftest import wait_operation

# On every engine, as the undo tests run: the BYODB's URL, and a service with its client on it.
byodb_url = test_undo.byodb_url
service_and_client = test_undo.service_and_client

# Keys out of jsonb's order at every level, a key repeated under another nesting; an integer beyond 64 bits
# (a JSON reader that takes it for a float changes the default: 10**20 is not 1e+20).
DEFAULT = {"zeta": 1, "a": {"yy": [1, {"bb": 2, "a": 3}], "b": None}, "mm": "x", "big": 10**20 + 1}


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
    assert defaults["doc"] == DEFAULT and isinstance(defaults["doc"]["big"], int)
    assert defaults["more"] == {"zz": 1, "b": 2}
    drift = await client.get("/v1/databases/default/drift")
    assert drift.status_code == 200, drift.text
    report = drift.json()
    assert (report["clean"], report["checked"], report["tables"]) == (True, 1, []), report
