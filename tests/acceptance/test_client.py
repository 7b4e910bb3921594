"""``schemasaga.client`` against a real ``schemasaga serve``: tables, columns, indexes, operations and
their wait, databases, events, errors as SchemasagaError; sync and async."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from schemasaga.api.models import ColumnSpec, OperationOut, TableOut
from schemasaga.client import AsyncClient, Client, SchemasagaError
from tests.acceptance.conftest import Spawn, start_server

pytestmark = [pytest.mark.acceptance]


def test_the_clients_against_the_real_service(
    service_env: dict[str, str], procs: Spawn, tmp_path: Path
) -> None:
    env = {
        **service_env,
        "SCHEMASAGA_SQLITE_DIR": str(tmp_path),
        "SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    _, url = start_server(procs, env)
    with Client(url) as client:
        sync_flow(client, tmp_path)
    asyncio.run(async_flow(url))


def sync_flow(client: Client, tmp_path: Path) -> None:
    accepted = client.tables.create(
        "people",
        columns=[
            ColumnSpec(name="email", type="string", nullable=False),
            {"name": "score", "type": "integer"},
        ],
        indexes=[{"columns": ["score"]}],
    )
    done = client.operations.wait(accepted, timeout=60)
    assert isinstance(done, OperationOut) and done.status == "completed"
    table = client.tables.show(accepted.table_id)
    assert isinstance(table, TableOut) and table.synced
    assert list(table.columns) == ["id", "name", "created_at", "updated_at", "email", "score"]
    assert [i.name for i in table.indexes] == ["people_score_idx"]

    steps = [
        client.columns.add(table.table_id, {"name": "age", "type": "integer"}, if_match=table.version),
        client.columns.alter(table.table_id, "age", type="bigint", default=0),
        client.indexes.add(table.table_id, {"columns": ["age"], "name": "people_age"}),
        client.indexes.drop(table.table_id, "people_age"),
        client.columns.remove(table.table_id, "email"),
        client.tables.rename(table.table_id, "persons"),
    ]
    for step in steps:
        assert client.operations.wait(step.operation_id).status == "completed"
    table = client.tables.show(table.table_id)
    assert table.name == "persons" and table.columns["age"].type == "bigint" and "email" not in table.columns
    assert [t.name for t in client.tables.list().items] == ["persons"]
    ops = client.operations.list(table_id=table.table_id)
    assert len(ops) == 7 and {o.status for o in ops} == {"completed"}
    types = [e.event_type for e in client.events.list(table_id=table.table_id)]
    assert types[0] == "TableCreated" and types.count("TableChangeConfirmed") == 6

    # Errors: the problem's fields, typed.
    with pytest.raises(SchemasagaError) as refused:
        client.columns.add(table.table_id, {"name": "age", "type": "integer"})
    assert (refused.value.status, refused.value.code) == (409, "column_exists")
    assert refused.value.type == "urn:schemasaga:problem:column_exists" and refused.value.title
    with pytest.raises(SchemasagaError) as stale:
        client.tables.rename(table.table_id, "again", if_match=0)
    assert (stale.value.status, stale.value.code) == (412, "version_mismatch")
    with pytest.raises(SchemasagaError) as reused:
        client.tables.create("other", idempotency_key=str(accepted.operation_id))
        client.tables.create("another", idempotency_key=str(accepted.operation_id))
    assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")
    # The same key and request: the first answer again.
    again = client.tables.create("other", idempotency_key=str(accepted.operation_id))
    assert again == client.tables.create("other", idempotency_key=str(accepted.operation_id))

    # Databases.
    registered = client.databases.register("files", f"sqlite:///{tmp_path / 'files.sqlite3'}")
    assert registered.engine == "sqlite"
    assert {d.name for d in client.databases.list().items} == {"default", "files"}
    assert client.databases.check("files").reachable
    assert client.databases.drift("files").clean
    assert client.databases.unregister("files").status == "ok"
    with pytest.raises(SchemasagaError) as missing:
        client.databases.get("files")
    assert (missing.value.status, missing.value.code) == (404, "database_not_found")

    deleted = client.tables.delete(table.table_id)
    assert client.operations.wait(deleted).status == "completed"

    # The live feed: the table's events, resumed after one of them.
    mine = list(client.events.stream(table_id=table.table_id, timeout=1.5))
    assert [e.event_type for e in mine] == [e.event_type for e in client.events.list(table_id=table.table_id)]
    assert [e.position for e in client.events.stream(after=mine[2].position, timeout=1.0)][:2] == [
        mine[3].position,
        mine[4].position,
    ]
    with pytest.raises(SchemasagaError) as bad_type:
        list(client.events.stream(types=["Nope"], timeout=1.0))
    assert (bad_type.value.status, bad_type.value.code) == (422, "unknown_event_type")

    # Webhooks (to a closed port: nothing is delivered).
    with pytest.raises(SchemasagaError) as private:
        client.webhooks.create("http://10.0.0.1/hook", ["TableCreated"])
    assert private.value.code == "webhook_target_not_allowed"
    hook = client.webhooks.create("http://127.0.0.1:9/hook", ["TableDeleted"])
    assert hook.secret is not None and client.webhooks.get(hook.webhook_id).url == "http://127.0.0.1:9/hook"
    assert [w.webhook_id for w in client.webhooks.list().items] == [hook.webhook_id]
    assert client.webhooks.deliveries(hook.webhook_id).items == []
    assert client.webhooks.delete(hook.webhook_id).status == "ok"
    assert client.webhooks.list().items == []


async def async_flow(url: str) -> None:
    async with AsyncClient(url) as client:
        accepted = await client.tables.create("async_people", columns=[{"name": "n", "type": "integer"}])
        assert (await client.operations.wait(accepted, timeout=60)).status == "completed"
        added = await client.columns.add(accepted.table_id, {"name": "m", "type": "text"})
        assert (await client.operations.wait(added)).status == "completed"
        table = await client.tables.show(accepted.table_id)
        assert list(table.columns)[-2:] == ["n", "m"]
        with pytest.raises(SchemasagaError) as refused:
            await client.tables.show("5a4c0f6c-0000-4000-8000-000000000000")
        assert (refused.value.status, refused.value.code) == (404, "table_not_found")
        deleted = await client.tables.delete(accepted.table_id)
        assert (await client.operations.wait(deleted)).status == "completed"
        streamed = [e.event_type async for e in client.events.stream(table_id=accepted.table_id, timeout=1.5)]
        assert streamed[0] == "TableCreated" and streamed[-1] == "TableDeletionConfirmed"
        hook = await client.webhooks.create("http://127.0.0.1:9/hook", ["TableCreated"], secret="x" * 20)
        assert hook.secret is None
        assert (await client.webhooks.delete(hook.webhook_id)).status == "ok"
