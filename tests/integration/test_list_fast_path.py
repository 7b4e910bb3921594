"""`GET /v1/tables` writes its page straight to JSON (api/pages.py), without a `ColumnOut` per column nor
FastAPI's response model: every answer must be, byte for byte, what the models gave (`TableOut.of` /
`TableOut.at` in a `TablePage`, serialized as FastAPI serializes a route's `response_model`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from pydantic import TypeAdapter

from schemasaga.api import pages
from schemasaga.api.models import TableOut, TablePage
from schemasaga.api.paging import next_after
from schemasaga.bootstrap import Container
from schemasaga.domain.table import Table
from tests.integration.conftest import wait_operation
from tests.integration.test_saga_flow import run_sql

# How FastAPI writes a route's response model (fastapi._compat: the TypeAdapter's dump_json).
PAGE = TypeAdapter(TablePage)

EVERY_FEATURE = {
    "name": "every_feature",
    "columns": [
        {"name": "n_int", "type": "integer", "nullable": False, "default": -7, "unique": True},
        {"name": "n_big", "type": "bigint", "default": 9007199254740993},
        {"name": "n_float", "type": "float", "default": 1e16},
        {"name": "n_float2", "type": "float", "default": 0.30000000000000004},
        {"name": "n_dec", "type": "decimal", "default": "1234567890.0123456789"},
        {"name": "s_text", "type": "text", "default": 'é "quoted" \\ \n\t 😀 \u2028'},
        {"name": "s_str", "type": "string", "nullable": False, "default": ""},
        {"name": "b", "type": "boolean", "default": False},
        {"name": "d", "type": "date", "default": "2024-02-29"},
        {"name": "ts", "type": "timestamp", "default": "2024-02-29T12:34:56.789"},
        {"name": "dt", "type": "datetime"},
        {"name": "j", "type": "json", "default": {"a": "b", "z": [1, 2.5, None, {"é": True}]}},
        {"name": "u", "type": "uuid", "default": "0f6c7e4e-55d0-4a53-a1f7-3a3c5a2e9b10", "unique": True},
    ],
    "indexes": [
        {"columns": ["n_int", "s_text"]},
        {"columns": ["s_str"], "unique": True, "name": "named_unique"},
    ],
}


async def accepted(client: httpx.AsyncClient, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    return await wait_operation(client, r.json()["operation_id"])


async def old_answer(service: Container, params: dict[str, Any]) -> bytes:
    """The page as the models built it (the route before api/pages.py), for the same query."""
    reads, known = service.reads, service.connections.known_engine
    limit = int(params.get("limit", 100))
    after = UUID(params["after"]) if "after" in params else None
    include_deleted = params.get("include_deleted") == "true"
    items: list[TableOut]
    if "at" in params:
        tables = await reads.tables_at(
            TypeAdapter(datetime).validate_python(params["at"]),
            database=params.get("database"),
            include_deleted=include_deleted,
            after=after,
            limit=limit,
        )
        items = [
            TableOut.at(t, engine=known(t.database))
            if isinstance(t, Table)
            else TableOut.of(t, engine=known(t.database))
            for t in tables
        ]
    else:
        views = await reads.list_tables(
            database=params.get("database"),
            include_deleted=include_deleted,
            include_trashed=params.get("include_trashed") == "true",
            after=after,
            limit=limit,
        )
        items = [TableOut.of(v, engine=known(v.database)) for v in views]
    page = TablePage(
        items=items, next_after=next_after(len(items), limit, items[-1].table_id if items else None)
    )
    return PAGE.dump_json(page, by_alias=True)


async def same_pages(client: httpx.AsyncClient, service: Container, params: dict[str, Any]) -> int:
    """Walk every page of the query: each answer the old path's bytes, its Link the next page's; the
    tables seen."""
    seen = 0
    while True:
        r = await client.get("/v1/tables", params=params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.content == await old_answer(service, params), params
        page = r.json()
        seen += len(page["items"])
        if "at" not in params:
            # Each table's bytes are also what FastAPI itself writes for it as a response model (`show`).
            for item in page["items"]:
                shown = await client.get(f"/v1/tables/{item['table_id']}")
                assert shown.status_code == 200, shown.text
                assert shown.content in r.content
        if page["next_after"] is None:
            assert "link" not in r.headers
            return seen
        assert r.headers["link"].endswith(f'after={page["next_after"]}>; rel="next"')
        params = {**params, "after": page["next_after"]}


async def test_the_page_is_byte_for_byte_the_models_answer(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    full = await accepted(client, await client.post("/v1/tables", json=EVERY_FEATURE))
    assert full["status"] == "completed", full
    full_id = full["table_id"]
    created = (await client.get(f"/v1/tables/{full_id}/events")).json()[-1]["created_at"]
    # Changes on it: a column renamed, one made NOT NULL, one removed (its values into the trash).
    for r in (
        await client.patch(f"/v1/tables/{full_id}/columns/b", json={"name": "flag", "nullable": False}),
        await client.delete(f"/v1/tables/{full_id}/columns/dt"),
        await client.post(f"/v1/tables/{full_id}/indexes", json={"columns": ["flag"]}),
    ):
        assert (await accepted(client, r))["status"] == "completed"
    moment = (await client.get(f"/v1/tables/{full_id}/events")).json()[-1]["created_at"]
    # Plain tables, one deleted into the trash, one purged, one whose creation was rejected.
    plain = []
    for name in ("plain_a", "plain_b", "trashed", "purged"):
        r = await client.post("/v1/tables", json={"name": name})
        assert (await accepted(client, r))["status"] == "completed"
        plain.append(r.json()["table_id"])
    assert (await accepted(client, await client.delete(f"/v1/tables/{plain[2]}")))["status"] == "completed"
    r = await client.delete(f"/v1/tables/{plain[3]}", params={"purge": "true"})
    assert (await accepted(client, r))["status"] == "completed"
    # An index name the database has already: its creation fails, the table is dropped again.
    run_sql(byodb_pg_url, "CREATE TABLE unmanaged (x integer)", "CREATE INDEX taken ON unmanaged (x)")
    body = {"name": "clash", "indexes": [{"columns": ["name"], "name": "taken"}]}
    rejected = await accepted(client, await client.post("/v1/tables", json=body))
    assert rejected["status"] == "rejected"

    everything = await same_pages(client, service, {"include_deleted": "true"})
    assert everything == 6
    assert await same_pages(client, service, {}) == 3
    assert await same_pages(client, service, {"include_trashed": "true"}) == 4
    for limit in (1, 2, 3):
        assert await same_pages(client, service, {"include_deleted": "true", "limit": str(limit)}) == 6
    assert await same_pages(client, service, {"database": "default", "limit": "2"}) == 3
    assert await same_pages(client, service, {"database": "nowhere"}) == 0
    # Those pages were written by api/pages.py, each table once per state and then taken from its memo.
    assert pages._listed.cache_info().hits > 0
    # A table changed after it was listed: its new state, not the one written for the earlier pages.
    r = await client.post(f"/v1/tables/{plain[0]}/columns", json={"name": "later", "type": "text"})
    assert (await accepted(client, r))["status"] == "completed"
    assert await same_pages(client, service, {"limit": "2"}) == 3
    # A row written by a process from before migration 0005: its columns an object by name.
    async with service.pool.connection() as conn:
        await conn.execute(
            "UPDATE rm_tables SET columns = (SELECT jsonb_object_agg(c->>'name', c) "
            "FROM jsonb_array_elements(columns) c) WHERE table_id = %s",
            (plain[1],),
        )
    assert await same_pages(client, service, {}) == 3
    # The whole system at a moment: the tables that moved since folded from their streams (Table), the
    # others as their read models hold them (TableView).
    assert await same_pages(client, service, {"at": created}) == 1
    assert await same_pages(client, service, {"at": moment, "include_deleted": "true"}) == 1
    r = await client.get("/v1/tables", params={"at": created})
    assert r.json()["items"][0]["columns"].keys() >= {"b", "dt"}  # as it was: before the changes
    now = datetime.now().astimezone().isoformat()
    assert await same_pages(client, service, {"at": now, "include_deleted": "true", "limit": "2"}) == 6
