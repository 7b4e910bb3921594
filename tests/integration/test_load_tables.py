"""Many tables at once, as drift scans them: loaded together (their newest snapshots, then their events
since: two queries in all) and inspected together (one catalog query on PostgreSQL), each is what it is
alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import httpx

from schemasaga.byodb.adapter import ByodbAdapter
from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.config import Settings
from schemasaga.domain.schema import LiveTable
from tests.integration.conftest import running_service, wait_synced
from tests.integration.test_saga_flow import create_table, run_sql


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


def test_inspect_tables_is_inspect_table_for_each(byodb_pg_url: str) -> None:
    """PostgreSQL reads the tables named exactly in one catalog query, the others one by one."""
    run_sql(
        byodb_pg_url,
        "CREATE TABLE plain (id integer PRIMARY KEY, name text NOT NULL DEFAULT 'x', n numeric(10, 2));"
        "CREATE TABLE indexed (id integer PRIMARY KEY, a integer UNIQUE, b text);"
        "CREATE INDEX indexed_b ON indexed (lower(b)) WHERE a > 0;"
        'CREATE TABLE "Mixed" (id integer);'
        "CREATE VIEW seen AS SELECT 1 AS one;",
    )
    adapter = ByodbAdapter(byodb_pg_url)
    try:
        names = ["plain", "indexed", "mixed", "Mixed", "seen", "missing"]
        many = adapter.inspect_tables(names)
        for name, found in zip(names, many, strict=True):
            try:
                alone: Any = adapter.inspect_table(name)
            except PermanentByodbError as exc:
                alone = exc
            if isinstance(alone, PermanentByodbError):
                assert isinstance(found, PermanentByodbError) and str(found) == str(alone), name
            else:
                assert found == alone, name
        assert many[5] is None and isinstance(many[4], PermanentByodbError)
        assert isinstance(many[1], LiveTable) and len(many[1].indexes) == 2
        assert isinstance(many[2], LiveTable) and many[2].name == "Mixed"  # another letter case
    finally:
        adapter.dispose()
