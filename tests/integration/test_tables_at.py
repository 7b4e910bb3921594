"""`GET /v1/tables?at=`: the whole system at a moment is, table by table, what `GET /v1/tables/{id}?at=`
answers for that moment (whole transactions only), and holds no table that had not begun by then."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import error_of
from tests.integration.conftest import wait_operation


async def finished(client: httpx.AsyncClient, r: httpx.Response) -> None:
    assert r.status_code == 202, r.text
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"


async def system_at(client: httpx.AsyncClient, moment: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/tables", params={"at": moment, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_the_system_at_every_moment_is_each_table_at_that_moment(client: httpx.AsyncClient) -> None:
    ids = []
    for name in ("kept", "dropped"):
        r = await client.post("/v1/tables", json={"name": name})
        ids.append(r.json()["table_id"])
        await finished(client, r)
    kept, dropped = ids
    await finished(
        client, await client.post(f"/v1/tables/{kept}/columns", json={"name": "age", "type": "integer"})
    )
    await finished(client, await client.delete(f"/v1/tables/{dropped}"))
    r = await client.post("/v1/tables", json={"name": "later"})
    ids.append(r.json()["table_id"])
    await finished(client, r)

    # Every moment an event joined a table's stream: several fall inside a transaction (a saga step and
    # its confirmation), where a read sees all of the transaction or none of it.
    moments = sorted(
        {
            e["created_at"]
            for table_id in ids
            for e in (await client.get(f"/v1/tables/{table_id}/events")).json()
        }
    )
    assert len(moments) > 10
    seen_versions = set()
    for moment in moments:
        expected = {}
        for table_id in ids:
            r = await client.get(f"/v1/tables/{table_id}", params={"at": moment})
            if r.status_code == 200:
                expected[table_id] = r.json()
            else:
                assert r.status_code == 404, r.text
        everything = await system_at(client, moment, include_deleted="true")
        assert {t["table_id"]: t for t in everything} == expected, moment
        live = await system_at(client, moment)
        assert {t["table_id"]: t for t in live} == {i: t for i, t in expected.items() if not t["deleted"]}
        seen_versions.add(tuple(sorted((t["name"], t["version"], len(t["columns"])) for t in everything)))

    # It did move: `kept` without, then with its column; `dropped` there, then deleted; `later` at last.
    first, last = await system_at(client, moments[0]), await system_at(client, moments[-1])
    assert [t["name"] for t in first] == ["kept"] and first[0]["columns"].keys() == {
        "id",
        "name",
        "created_at",
        "updated_at",
    }
    assert sorted(t["name"] for t in last) == ["kept", "later"]
    assert "age" in next(t for t in last if t["name"] == "kept")["columns"]
    assert len(seen_versions) > 5

    # Keyset paging at a moment: one table a page, in id order, the cursor carried on.
    r = await client.get("/v1/tables", params={"at": moments[-1], "limit": 1, "include_deleted": "true"})
    pages = [r.json()]
    while pages[-1]["next_after"]:
        params = {"at": moments[-1], "limit": 1, "include_deleted": "true", "after": pages[-1]["next_after"]}
        pages.append((await client.get("/v1/tables", params=params)).json())
    assert [t["table_id"] for p in pages for t in p["items"]] == sorted(ids)

    r = await client.get("/v1/tables", params={"at": "yesterday"})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"
