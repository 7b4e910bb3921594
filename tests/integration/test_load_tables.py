"""Loading many tables at once (drift scans: their newest snapshots, then their events since, two queries
in all) gives each table exactly as loading it alone does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import httpx

from schemasaga.config import Settings
from tests.integration.conftest import running_service, wait_synced
from tests.integration.test_saga_flow import create_table


async def test_load_tables_is_load_table_for_each(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    # A snapshot every 2 events: some tables are loaded from one, with events after it, some from none.
    async with running_service(settings_factory(byodb_pg_url, snapshot_every=2)) as service:
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            ids = [await create_table(client, f"many_{i}") for i in range(3)]
            for i, table_id in enumerate(ids):
                await wait_synced(client, table_id)
                for k in range(i):
                    body = {"table_id": table_id, "column": {"name": f"c{k}", "type": "integer"}}
                    assert (await client.post("/table/column", json=body)).status_code == 200
                    await wait_synced(client, table_id)
        async with service.pool.connection() as conn:
            snapshots = await (
                await conn.execute("SELECT count(DISTINCT stream) FROM event_store_snapshots")
            ).fetchone()
        assert snapshots is not None and snapshots[0] == 3
        unknown = uuid4()
        many = await service.uow.load_tables([*map(UUID, ids), unknown])
        assert set(many) == set(map(UUID, ids))  # a table with no events is left out
        for table_id in map(UUID, ids):
            alone: Any = await service.uow.load_table(table_id)
            assert many[table_id].version == alone.version
            assert many[table_id].state_equals(alone), table_id
        assert [len(many[UUID(t)].confirmed.columns) for t in ids] == [4, 5, 6]
