"""A drift scan reads each settled table's confirmed schema from the read models (one row per table) instead
of folding its events: both give the same report, on histories with every kind of change, with drift
made behind the service's back and with a change in flight."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.services.drift import DriftReport
from schemasaga.sql import queries
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.test_saga_flow import run_sql


async def accepted(client: httpx.AsyncClient, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 202), r.text
    return await wait_operation(client, r.json()["operation_id"], timeout=60)


async def completed(client: httpx.AsyncClient, r: httpx.Response) -> str:
    operation = await accepted(client, r)
    assert operation["status"] == "completed", operation
    return str(operation["operation_id"])


async def table(client: httpx.AsyncClient, name: str, **body: Any) -> str:
    r = await client.post("/v1/tables", json={"name": name, **body})
    await completed(client, r)
    return str(r.json()["table_id"])


async def every_kind_of_change(client: httpx.AsyncClient, byodb_pg_url: str) -> dict[str, str]:
    """Tables whose histories hold every kind of change; their ids by role."""
    ids: dict[str, str] = {}
    shop = ids["shop"] = await table(
        client,
        "shop",
        columns=[
            {"name": "sku", "type": "string", "unique": True},
            {"name": "qty", "type": "integer", "default": 0, "nullable": False},
            {"name": "price", "type": "decimal", "default": "1.50"},
        ],
        indexes=[{"columns": ["qty"], "name": "shop_qty_idx"}],
    )
    base = f"/v1/tables/{shop}"
    await completed(client, await client.post(f"{base}/columns", json={"name": "note", "type": "text"}))
    await completed(client, await client.patch(f"{base}/columns/note", json={"name": "remark"}))
    await completed(client, await client.patch(f"{base}/columns/qty", json={"type": "bigint"}))
    await completed(client, await client.patch(f"{base}/columns/remark", json={"nullable": False}))
    await completed(client, await client.patch(f"{base}/columns/qty", json={"default": 7}))
    await completed(client, await client.patch(f"{base}/columns/sku", json={"unique": False}))
    await completed(client, await client.patch(f"{base}/columns/remark", json={"unique": True}))
    await completed(client, await client.post(f"{base}/indexes", json={"columns": ["remark", "qty"]}))
    await completed(client, await client.delete(f"{base}/indexes/shop_qty_idx"))
    removal = await completed(client, await client.delete(f"{base}/columns/price"))
    await completed(client, await client.patch(base, json={"name": "store"}))
    await completed(client, await client.post(f"/v1/operations/{removal}/undo"))  # the column back

    # A rejected change (a view depends on the column) and a rejected deletion (a view on the table).
    keeper = ids["keeper"] = await table(client, "keeper", columns=[{"name": "age", "type": "integer"}])
    run_sql(byodb_pg_url, "CREATE VIEW keeper_ages AS SELECT age FROM keeper")
    r = await client.delete(f"/v1/tables/{keeper}/columns/age")
    assert (await accepted(client, r))["status"] == "rejected"
    r = await client.delete(f"/v1/tables/{keeper}?purge=true")
    assert (await accepted(client, r))["status"] == "rejected"

    # Deleted into the trash; deleted and restored; purged.
    ids["trashed"] = await table(client, "trashed")
    await completed(client, await client.delete(f"/v1/tables/{ids['trashed']}"))
    ids["restored"] = await table(client, "restored", columns=[{"name": "v", "type": "float"}])
    await completed(client, await client.delete(f"/v1/tables/{ids['restored']}"))
    (entry,) = [e for e in (await client.get("/v1/trash")).json() if e["table_id"] == ids["restored"]]
    await completed(client, await client.post(f"/v1/trash/{entry['trash_id']}/restore"))
    ids["purged"] = await table(client, "purged")
    await completed(client, await client.delete(f"/v1/tables/{ids['purged']}?purge=true"))

    # Tracked; adopted after drift; repaired after drift.
    run_sql(byodb_pg_url, "CREATE TABLE legacy (id integer PRIMARY KEY, label text DEFAULT 'x')")
    r = await client.post("/v1/tables/track", json={"name": "legacy"})
    await completed(client, r)
    ids["tracked"] = r.json()["table_id"]
    ids["adopted"] = await table(client, "adopted", columns=[{"name": "n", "type": "integer"}])
    run_sql(
        byodb_pg_url, "ALTER TABLE adopted ADD COLUMN extra boolean", "CREATE INDEX adopted_n ON adopted (n)"
    )
    r = await client.post(f"/v1/tables/{ids['adopted']}/reconcile", json={"strategy": "adopt"})
    await completed(client, r)
    ids["repaired"] = await table(client, "repaired", columns=[{"name": "n", "type": "integer"}])
    run_sql(byodb_pg_url, "ALTER TABLE repaired DROP COLUMN n")
    r = await client.post(f"/v1/tables/{ids['repaired']}/reconcile", json={"strategy": "repair"})
    await completed(client, r)
    for name in ("plain", "busy", "moved", "dropped", "retyped"):
        ids[name] = await table(client, name, columns=[{"name": "n", "type": "integer", "default": 1}])
    for table_id in ids.values():
        await wait_synced(client, table_id)
    return ids


def same(report: DriftReport) -> tuple[Any, ...]:
    return (
        report.database,
        report.checked,
        report.in_flight,
        [(t.table_id, t.name, t.issues) for t in report.drifted],
        report.unmanaged_tables,
    )


async def test_the_read_models_give_the_report_the_events_give(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    settings = settings_factory(byodb_pg_url)
    async with service_and_client(settings) as (_, client):
        ids = await every_kind_of_change(client, byodb_pg_url)
    # A creation rejected: accepted while no worker runs, its name then taken by a table of another shape.
    async with service_and_client(settings, worker=False) as (_, client):
        r = await client.post("/v1/tables", json={"name": "squatted"})
        assert r.status_code == 202, r.text
        creation = r.json()["operation_id"]
    run_sql(byodb_pg_url, "CREATE TABLE squatted (x integer)")
    async with service_and_client(settings) as (service, client):
        operation = await wait_operation(client, creation, timeout=60)
        assert operation["status"] == "rejected", operation
        assert await both(service) == 0  # no drift yet: everything as confirmed

    # Drift behind the service's back, of every kind the diff knows; then a change accepted that no worker
    # runs (in flight: not checked).
    run_sql(
        byodb_pg_url,
        "ALTER TABLE store ADD COLUMN stray text",
        "ALTER TABLE store ALTER COLUMN qty SET DEFAULT 9",
        "ALTER TABLE store ALTER COLUMN remark DROP NOT NULL",
        "ALTER TABLE keeper ADD COLUMN stray integer",
        "ALTER TABLE retyped ALTER COLUMN n TYPE bigint",
        "ALTER TABLE moved RENAME TO moved_away",
        "DROP TABLE dropped",
        "DROP INDEX adopted_n",
        "ALTER TABLE legacy ALTER COLUMN label DROP DEFAULT",
        "CREATE TABLE stranger (x integer)",
    )
    async with service_and_client(settings, worker=False) as (service, client):
        r = await client.post(f"/v1/tables/{ids['busy']}/columns", json={"name": "later", "type": "date"})
        assert r.status_code == 202, r.text
        assert (
            await both(service, in_flight=1) == 7
        )  # store, keeper, retyped, moved, dropped, adopted, legacy


@contextlib.asynccontextmanager
async def service_and_client(
    settings: Settings, *, worker: bool = True
) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    async with running_service(settings, worker=worker) as service:
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            yield service, client


async def both(service: Container, *, in_flight: int = 0) -> int:
    """The scan from the read models and the scan from the events, compared; how many tables drifted."""
    from_rows = await service.drift.scan("default")
    from_events = await service.drift.scan("default", from_events=True)
    assert same(from_rows) == same(from_events)
    assert from_rows.in_flight == in_flight
    return len(from_rows.drifted)


_FILL = """
INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, columns, version, created_at,
                       updated_at)
SELECT md5(i::text)::uuid, 'db' || i % 5, 't' || i, true, true, '[]', 1, now(), now()
FROM generate_series(1, 100000) i;
ANALYZE rm_tables;
"""


async def test_a_batch_is_read_by_primary_key_on_a_filled_core(service: Container) -> None:
    # What a batch costs must not grow with the tables of the core: 200 look-ups in rm_tables' key.
    batch = [uuid.UUID(hashlib.md5(str(i).encode()).hexdigest()) for i in range(1, 100000, 500)]
    async with service.pool.connection() as conn:
        await conn.execute(_FILL)
        query = queries("views")["tables_by_id"]
        rows = await (await conn.execute("EXPLAIN " + query, {"table_ids": batch}, prepare=False)).fetchall()
    plan = "\n".join(r[0] for r in rows)
    assert "Seq Scan" not in plan and "rm_tables_pkey" in plan, plan
    assert len(await service.reads.tables_by_id(batch)) == len(batch)
