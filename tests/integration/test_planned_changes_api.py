"""The planned changes end to end on each engine: PATCH and the index routes accept a change with its plan,
the saga runs the plan (ByodbAdapter.apply_plan) and the table is as `show` says, read by SQLAlchemy's
inspector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import sqlalchemy as sa

from schemasaga.byodb.planner import unique_index_name
from schemasaga.config import Settings
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation, wait_synced

ENGINES = [
    pytest.param("byodb_pg_url", id="postgresql"),
    pytest.param("byodb_mysql_url", id="mysql", marks=pytest.mark.mariadb),
    pytest.param("byodb_sqlite_url", id="sqlite"),
]


@pytest.fixture(params=ENGINES)
def byodb_url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(request.param)
    return value


@pytest.fixture
async def engine_client(
    settings_factory: Callable[..., Settings], byodb_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole service (core on PostgreSQL, a worker) with its default database on each engine."""
    async with running_service(settings_factory(byodb_url)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            yield c


async def completed(client: httpx.AsyncClient, response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 202, response.text
    operation = await wait_operation(client, response.json()["operation_id"])
    assert operation["status"] == "completed", operation["last_error"]
    return operation


async def test_rename_alter_and_index_run_their_plans(
    engine_client: httpx.AsyncClient, byodb_url: str
) -> None:
    client = engine_client
    r = await client.post(
        "/v1/tables",
        json={
            "name": "people",
            "columns": [{"name": "age", "type": "text"}, {"name": "age2", "type": "string"}],
        },
    )
    await completed(client, r)
    table_id = r.json()["table_id"]
    reader = sa.create_engine(byodb_url)
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
        assert any(unique_index_name("people", "years") in sql for sql in statements)

        await completed(
            client,
            await client.patch(
                f"/v1/tables/{table_id}/columns/age",
                json={"name": "years", "type": "integer", "nullable": False, "default": 0, "unique": True},
            ),
        )
        await completed(
            client,
            await client.post(f"/v1/tables/{table_id}/indexes", json={"columns": ["age2"], "name": "ix_n"}),
        )
        await completed(client, await client.patch(f"/v1/tables/{table_id}", json={"name": "folks"}))
        table = await wait_synced(client, table_id)

        assert table["name"] == "folks"
        assert table["columns"]["years"]["unique"] is True  # type: ignore[index]
        inspector = sa.inspect(reader)
        columns = {c["name"]: c for c in inspector.get_columns("folks")}
        assert isinstance(columns["years"]["type"], sa.Integer) and columns["years"]["nullable"] is False
        indexes = {i["name"]: i for i in inspector.get_indexes("folks")}
        assert indexes["ix_n"]["column_names"] == ["age2"]
        assert indexes[unique_index_name("people", "years")]["unique"]
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


async def test_rows_that_do_not_fit_refuse_the_change(
    engine_client: httpx.AsyncClient, byodb_url: str
) -> None:
    client = engine_client
    r = await client.post("/v1/tables", json={"name": "vals", "columns": [{"name": "v", "type": "text"}]})
    await completed(client, r)
    table_id = r.json()["table_id"]
    reader = sa.create_engine(byodb_url)
    try:
        with reader.begin() as conn:
            conn.execute(sa.text("INSERT INTO vals (id, v) VALUES (1, '1'), (2, 'x'), (3, 'y')"))
        version = (await wait_synced(client, table_id))["version"]
        r = await client.patch(f"/v1/tables/{table_id}/columns/v", json={"type": "integer"})
        assert r.status_code == 409, r.text
        error = error_of(r)
        assert error["code"] == "incompatible_rows"
        assert "2 rows with a value of 'v' that is no integer" in error["message"]
        assert error["details"] == {"count": 2, "primary_keys": [2, 3]}
        table = await wait_synced(client, table_id)
        assert table["columns"]["v"]["type"] == "text" and table["version"] == version  # type: ignore[index]
        # Once the rows fit, the same change goes through.
        with reader.begin() as conn:
            conn.execute(sa.text("DELETE FROM vals WHERE id IN (2, 3)"))
        r = await client.patch(f"/v1/tables/{table_id}/columns/v", json={"type": "integer"})
        assert r.status_code == 202, r.text
        assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
        assert (await wait_synced(client, table_id))["columns"]["v"]["type"] == "integer"  # type: ignore[index]
    finally:
        reader.dispose()


async def test_an_index_mariadb_cannot_make_is_refused_when_creating_the_table_too(
    engine_client: httpx.AsyncClient, byodb_url: str
) -> None:
    # A plain index on a text column needs a prefix length on MariaDB/MySQL: POST .../indexes refuses it,
    # and so must creating the table with it (it was accepted, MariaDB made a prefix index, and the
    # creation was rejected afterwards). The other engines make it.
    client = engine_client
    body = {"name": "notes", "indexes": [{"columns": ["name"], "name": "notes_nm"}]}
    for dry_run in ("?dry_run=true", ""):
        r = await client.post(f"/v1/tables{dry_run}", json=body)
        if not byodb_url.startswith("mysql"):
            assert r.status_code in (200, 202), r.text
            continue
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "unsupported_change" and "prefix" in error_of(r)["message"]
    if byodb_url.startswith("mysql"):
        assert (await client.get("/v1/tables")).json()["items"] == []
        # A unique one is what MariaDB can make.
        body["indexes"][0]["unique"] = True  # type: ignore[index]
        r = await client.post("/v1/tables", json=body)
    await completed(client, r)


async def test_an_index_name_another_table_holds_is_refused_before_anything_is_written(
    engine_client: httpx.AsyncClient, byodb_url: str
) -> None:
    # Index names are per schema on PostgreSQL and per database on SQLite: the saga found the name taken
    # and rejected the change after it was accepted. It is refused when asked for, and writes nothing.
    client = engine_client
    ids = []
    for name in ("first", "second"):
        r = await client.post(
            "/v1/tables", json={"name": name, "columns": [{"name": "code", "type": "string"}]}
        )
        await completed(client, r)
        ids.append(r.json()["table_id"])
    await completed(
        client,
        await client.post(f"/v1/tables/{ids[0]}/indexes", json={"columns": ["code"], "name": "ix_code"}),
    )
    version = (await client.get(f"/v1/tables/{ids[1]}")).json()["version"]
    r = await client.post(f"/v1/tables/{ids[1]}/indexes", json={"columns": ["code"], "name": "ix_code"})
    if byodb_url.startswith("mysql"):  # names are per table there
        await completed(client, r)
        return
    assert r.status_code == 422, r.text
    assert "'ix_code' is taken by an index of 'first'" in error_of(r)["message"]
    assert (await client.get(f"/v1/tables/{ids[1]}")).json()["version"] == version
    assert (await client.get("/v1/operations", params={"table_id": ids[1]})).json()[0][
        "kind"
    ] == "create_table"
