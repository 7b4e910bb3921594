"""The read models are rebuildable: rebuilding them from the events gives back exactly the rows that
were written as the events were appended."""

from __future__ import annotations

from typing import Any

import httpx
from psycopg.rows import dict_row

from schemasaga.bootstrap import Container
from schemasaga.coredb.readmodels import rebuild as rebuild_all
from tests.integration.conftest import wait_operation, wait_synced
from tests.integration.test_saga_flow import create_table, run_sql

READ_MODELS = {
    "rm_tables": "SELECT * FROM rm_tables ORDER BY table_id",
    # Not `starts`: how many times a worker started an operation is no event, and a rebuild forgets it.
    "rm_operations": "SELECT to_jsonb(o) - 'starts' AS row FROM rm_operations o ORDER BY operation_id",
    "rm_databases": "SELECT * FROM rm_databases ORDER BY name",
    "rm_trash": "SELECT * FROM rm_trash ORDER BY trash_id",
}


async def read_models(container: Container) -> dict[str, list[dict[str, Any]]]:
    async with container.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        out = {}
        for name, query in READ_MODELS.items():
            await cur.execute(query)
            out[name] = await cur.fetchall()
        return out


async def test_rebuild_gives_back_the_read_models(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str, byodb_sqlite_url: str
) -> None:
    r = await client.post("/v1/databases", json={"name": "files", "url": byodb_sqlite_url})
    assert r.status_code == 201, r.text
    kept = await create_table(client, "kept")
    await wait_synced(client, kept)
    for body in (
        {"table_id": kept, "column": {"name": "age", "type": "integer"}},
        {"table_id": kept, "column": {"name": "name"}},
    ):
        assert (await client.post("/table/column", json=body)).status_code == 200
    await wait_synced(client, kept)
    # A rejection, with the database's message.
    run_sql(byodb_pg_url, "CREATE VIEW kept_ages AS SELECT age FROM kept")
    r = await client.post("/table/column", json={"table_id": kept, "column": {"name": "age"}})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "rejected"
    # A deleted table on the other database.
    r = await client.post("/table/create", json={"name": "gone", "database": "files"})
    gone = r.json()["table"]["table_id"]
    await wait_synced(client, gone)
    await client.post("/table/delete", json={"table_id": gone})
    await wait_synced(client, gone)

    before = await read_models(service)
    assert len(before["rm_tables"]) == 2 and len(before["rm_operations"]) == 6
    assert len(before["rm_databases"]) == 2
    # the removed column's values and the deleted table are in the trash
    assert sorted(row["kind"] for row in before["rm_trash"]) == ["column", "table"]
    async with service.pool.connection() as conn, conn.transaction():
        counts = await rebuild_all(conn, service.store)
    assert counts == {"tables": 2, "databases": 2}
    assert await read_models(service) == before


async def test_rebuild_with_a_name_reused_by_later_tables(
    client: httpx.AsyncClient, service: Container
) -> None:
    """Only one table holds a name at a time, so a rebuild must meet the tables in the order they were
    created, not in the order of their ids: the live one would otherwise take the name first."""
    ids: list[str] = []
    while True:
        table_id = await create_table(client, "reused")
        await wait_synced(client, table_id)
        ids.append(table_id)
        if len(ids) >= 2 and table_id != max(ids):  # the live table's stream is not the last by id
            break
        r = await client.post("/table/delete", json={"table_id": table_id})
        assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"

    before = await read_models(service)
    async with service.pool.connection() as conn, conn.transaction():
        counts = await rebuild_all(conn, service.store)
    assert counts["tables"] == len(ids)
    assert await read_models(service) == before
