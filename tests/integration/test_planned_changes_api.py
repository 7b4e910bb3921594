"""The planned changes end to end on PostgreSQL: PATCH and the index routes accept a change with its plan,
the saga runs the plan (ByodbAdapter.apply_plan) and the table is as `show` says, read by SQLAlchemy's
inspector."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from schemasaga.bootstrap import Container
from tests.integration.conftest import wait_operation, wait_synced


async def completed(client: httpx.AsyncClient, response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 202, response.text
    operation = await wait_operation(client, response.json()["operation_id"])
    assert operation["status"] == "completed", operation["last_error"]
    return operation


async def test_rename_alter_and_index_run_their_plans(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    r = await client.post("/v1/tables", json={"name": "people", "columns": [{"name": "age", "type": "text"}]})
    await completed(client, r)
    table_id = r.json()["table_id"]
    reader = sa.create_engine(byodb_pg_url)
    try:
        with reader.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO people (id, name, age) VALUES (1, 'ann', '31'), (2, 'bob', '42')")
            )

        dry = await client.patch(
            f"/v1/tables/{table_id}/columns/age?dry_run=true",
            json={"name": "years", "type": "integer", "nullable": False, "default": 0, "unique": True},
        )
        assert dry.status_code == 200, dry.text
        statements = [s["sql"] for s in dry.json()["statements"]]
        assert statements[-1] == 'CREATE UNIQUE INDEX CONCURRENTLY "people_years_key" ON "people" ("years")'

        await completed(
            client,
            await client.patch(
                f"/v1/tables/{table_id}/columns/age",
                json={"name": "years", "type": "integer", "nullable": False, "default": 0, "unique": True},
            ),
        )
        await completed(
            client,
            await client.post(f"/v1/tables/{table_id}/indexes", json={"columns": ["name"], "name": "ix_n"}),
        )
        await completed(client, await client.patch(f"/v1/tables/{table_id}", json={"name": "folks"}))
        table = await wait_synced(client, table_id)

        assert table["name"] == "folks"
        assert table["columns"]["years"]["unique"] is True  # type: ignore[index]
        inspector = sa.inspect(reader)
        columns = {c["name"]: c for c in inspector.get_columns("folks")}
        assert isinstance(columns["years"]["type"], sa.Integer) and columns["years"]["nullable"] is False
        indexes = {i["name"]: i for i in inspector.get_indexes("folks")}
        assert indexes["ix_n"]["column_names"] == ["name"]
        assert indexes["people_years_key"]["unique"]
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT id, years FROM folks ORDER BY id")).all() == [
                (1, 31),
                (2, 42),
            ]

        # the unique index keeps its name through the table's rename: dropping it finds it live
        await completed(
            client, await client.patch(f"/v1/tables/{table_id}/columns/years", json={"unique": False})
        )
        await completed(client, await client.delete(f"/v1/tables/{table_id}/indexes/ix_n"))
        assert sa.inspect(reader).get_indexes("folks") == []
    finally:
        reader.dispose()


async def test_rows_that_do_not_fit_reject_the_change(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    r = await client.post("/v1/tables", json={"name": "vals", "columns": [{"name": "v", "type": "text"}]})
    await completed(client, r)
    table_id = r.json()["table_id"]
    reader = sa.create_engine(byodb_pg_url)
    try:
        with reader.begin() as conn:
            conn.execute(sa.text("INSERT INTO vals (id, v) VALUES (1, '1'), (2, 'x'), (3, 'y')"))
        r = await client.patch(f"/v1/tables/{table_id}/columns/v", json={"type": "integer"})
        assert r.status_code == 202, r.text
        operation = await wait_operation(client, r.json()["operation_id"])
        assert operation["status"] == "rejected"
        assert "2 rows with a value of 'v' that is no integer" in str(operation["last_error"])
        table = await wait_synced(client, table_id)
        assert table["columns"]["v"]["type"] == "text"  # type: ignore[index]
    finally:
        reader.dispose()
