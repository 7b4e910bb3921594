"""The trash (issue 9) on every engine: a deleted table and a removed column come back with every row,
retention purges what is due and nothing else, drift never shows the trash, and bad input writes nothing.

``SCHEMASAGA_TEST_TRASH_ROWS`` sets the rows per table (``make trash-long``: 10,000)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from schemasaga.bootstrap import Container
from schemasaga.cli import main
from schemasaga.client import AsyncClient
from schemasaga.config import Settings
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.test_saga_flow import counts

ROWS = int(os.environ.get("SCHEMASAGA_TEST_TRASH_ROWS", "300"))
FIXTURES = {"postgresql": "byodb_pg_url", "mysql": "byodb_mysql_url", "sqlite": "byodb_sqlite_url"}
TRASH_PREFIX = "_ssg_trash_"


@pytest.fixture(params=list(FIXTURES))
def engine_url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(FIXTURES[request.param])
    return value


@pytest.fixture
async def service(settings_factory: Callable[..., Settings], engine_url: str) -> AsyncIterator[Container]:
    async with running_service(settings_factory(engine_url, trash_purge_interval=0.2)) as container:
        yield container


@pytest.fixture
async def client(service: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=service.web_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        yield c


def physical_tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def checksum(url: str, table: str, columns: list[str]) -> tuple[int, str]:
    """Rows and a digest of their values, ordered by the primary key (id)."""
    engine = sa.create_engine(url)
    quote = engine.dialect.identifier_preparer.quote
    digest = hashlib.sha256()
    count = 0
    try:
        with engine.connect() as conn:
            names = ", ".join(quote(c) for c in columns)
            for row in conn.execute(sa.text(f"SELECT {names} FROM {quote(table)} ORDER BY {quote('id')}")):
                digest.update(repr(tuple(row)).encode())
                count += 1
    finally:
        engine.dispose()
    return count, digest.hexdigest()


def fill(url: str, table: str, rows: list[dict[str, Any]]) -> None:
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        target = sa.Table(table, meta, autoload_with=engine)
        with engine.begin() as conn:
            for start in range(0, len(rows), 2000):
                conn.execute(sa.insert(target), rows[start : start + 2000])
    finally:
        engine.dispose()


async def done(client: httpx.AsyncClient, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 202, r.text
    operation = await wait_operation(client, r.json()["operation_id"], timeout=60)
    assert operation["status"] == "completed", operation["last_error"]
    return r.json()  # type: ignore[no-any-return]


async def new_table(client: httpx.AsyncClient, name: str, columns: list[dict[str, Any]] | None = None) -> str:
    r = await client.post("/v1/tables", json={"name": name, "columns": columns or []})
    table_id = str((await done(client, r))["table_id"])
    await wait_synced(client, table_id)
    return table_id


async def trash_of(client: httpx.AsyncClient, database: str = "default") -> list[dict[str, Any]]:
    r = await client.get(f"/v1/trash?database={database}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_deleted_table_comes_back_with_every_row(client: httpx.AsyncClient, engine_url: str) -> None:
    table_id = await new_table(client, "people", [{"name": "score", "type": "integer"}])
    fill(
        engine_url, "people", [{"id": i, "name": f"n{i}", "score": i * 7 % 1000} for i in range(1, ROWS + 1)]
    )
    columns = ["id", "name", "created_at", "updated_at", "score"]
    before = checksum(engine_url, "people", columns)

    r = await client.delete(f"/v1/tables/{table_id}")
    operation_id = r.json()["operation_id"]
    await done(client, r)
    trash_tables = [t for t in physical_tables(engine_url) if t.startswith(TRASH_PREFIX)]
    assert "people" not in physical_tables(engine_url) and len(trash_tables) == 1
    assert len(trash_tables[0]) <= 30
    shown = (await client.post("/table/show", json={"table_id": table_id})).json()["table"]
    assert (shown["exists"], shown["trashed"]) == (False, True)
    listed = {t["table_id"] for t in (await client.get("/v1/tables")).json()["items"]}
    assert table_id not in listed
    trashed = {t["table_id"] for t in (await client.get("/v1/tables?include_trashed=true")).json()["items"]}
    assert table_id in trashed
    # The console says so, and filters on it.
    page = (await client.get("/console?status=trashed")).text
    assert (
        f'href="/console/tables/{table_id}"' in page and '<span class="status trashed">trashed</span>' in page
    )
    assert f"/console/tables/{table_id}" not in (await client.get("/console?status=synced")).text
    [entry] = await trash_of(client)
    assert entry["trash_id"] == operation_id  # the id of the operation that trashed it
    assert {k: entry[k] for k in ("kind", "table", "column", "rows", "status")} == {
        "kind": "table",
        "table": "people",
        "column": None,
        "rows": ROWS,
        "status": "trashed",
    }
    assert entry["purge_at"] > entry["trashed_at"]
    drift = (await client.get("/v1/databases/default/drift")).json()
    assert not any(TRASH_PREFIX in str(name) for name in drift["unmanaged_tables"]), drift

    await done(client, await client.post(f"/v1/trash/{entry['trash_id']}/restore"))
    assert checksum(engine_url, "people", columns) == before
    shown = await wait_synced(client, table_id)
    assert (shown["exists"], shown["trashed"], shown["name"]) == (True, False, "people")
    assert await trash_of(client) == []
    assert (await client.get(f"/v1/trash/{entry['trash_id']}")).json()["status"] == "restored"
    assert not [t for t in physical_tables(engine_url) if t.startswith(TRASH_PREFIX)]
    # restored: a table like any other, which changes and deletes again
    await done(
        client, await client.post(f"/v1/tables/{table_id}/columns", json={"name": "x", "type": "text"})
    )
    again = await client.post(f"/v1/trash/{entry['trash_id']}/restore")
    assert again.status_code == 410 and error_of(again)["code"] == "purged"


async def test_a_removed_column_comes_back_with_its_values_and_definition(
    client: httpx.AsyncClient, engine_url: str
) -> None:
    spec = [
        {"name": "score", "type": "integer", "nullable": False, "default": 5},
        {"name": "code", "type": "string", "nullable": False, "unique": True},
    ]
    table_id = await new_table(client, "items", spec)
    rows = [{"id": i, "name": f"n{i}", "score": i % 97, "code": f"c{i}"} for i in range(1, ROWS + 1)]
    fill(engine_url, "items", rows)
    columns = ["id", "score", "code"]
    before = checksum(engine_url, "items", columns)
    shown_before = (await wait_synced(client, table_id))["columns"]

    dry = await client.delete(f"/v1/tables/{table_id}/columns/code?dry_run=true")
    assert any(TRASH_PREFIX in s["sql"] for s in dry.json()["statements"]), dry.text
    for name in ("code", "score"):
        answer = await done(client, await client.delete(f"/v1/tables/{table_id}/columns/{name}"))
        assert answer["warnings"] == []
    engine = sa.create_engine(engine_url)
    live = sa.inspect(engine).get_columns("items")
    engine.dispose()
    assert {c["name"] for c in live} == {"id", "name", "created_at", "updated_at"}
    entries = await trash_of(client)
    assert [(e["kind"], e["column"], e["rows"]) for e in entries] == [
        ("column", "score", ROWS),
        ("column", "code", ROWS),
    ]
    drift = (await client.get("/v1/databases/default/drift")).json()
    assert drift["unmanaged_tables"] == [] and drift["tables"] == [], drift

    for entry in reversed(entries):
        await done(client, await client.post(f"/v1/trash/{entry['trash_id']}/restore"))
    assert checksum(engine_url, "items", columns) == before
    shown = await wait_synced(client, table_id)
    assert shown["columns"] == shown_before
    assert (await client.get("/v1/databases/default/drift")).json()["tables"] == []
    assert not [t for t in physical_tables(engine_url) if t.startswith(TRASH_PREFIX)]


@pytest.mark.parametrize("engine_url", ["postgresql"], indirect=True)
async def test_bad_input_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, service: Container, engine_url: str
) -> None:
    unknown = await client.post("/v1/trash/00000000-0000-0000-0000-000000000000/restore")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "trash_not_found"
    assert (await client.get("/v1/trash/not-a-uuid")).status_code == 422

    table_id = await new_table(client, "gone")
    await done(client, await client.delete(f"/v1/tables/{table_id}"))
    [entry] = await trash_of(client)
    other = await new_table(client, "gone")  # the name is taken again meanwhile
    before = await counts(service)
    taken = await client.post(f"/v1/trash/{entry['trash_id']}/restore")
    assert taken.status_code == 409 and error_of(taken)["code"] == "name_taken", taken.text
    for bad in ("no such name!", "x" * 80, TRASH_PREFIX + "0123456789abcdef"):
        invalid = await client.post(f"/v1/trash/{entry['trash_id']}/restore", json={"name": bad})
        assert invalid.status_code == 422, (bad, invalid.text)
    extra = await client.post(f"/v1/trash/{entry['trash_id']}/restore", json={"nme": "x"})
    assert extra.status_code == 422
    # the trash's names are its own: no table is created, tracked or renamed to one
    trash_table = next(t for t in physical_tables(engine_url) if t.startswith(TRASH_PREFIX))
    for method, path, body in (
        ("POST", "/v1/tables", {"name": TRASH_PREFIX + "0123456789abcdef"}),
        ("POST", "/v1/tables/track", {"name": trash_table}),
        ("PATCH", f"/v1/tables/{other}", {"name": TRASH_PREFIX + "0123456789abcdef"}),
    ):
        refused = await client.request(method, path, json=body)
        assert refused.status_code == 422 and error_of(refused)["code"] == "invalid_name", refused.text
    assert await counts(service) == before

    # under another name, it comes back
    await done(client, await client.post(f"/v1/trash/{entry['trash_id']}/restore", json={"name": "gone_2"}))
    assert (await wait_synced(client, table_id))["name"] == "gone_2"

    # purged: its data is gone, and a restore says so
    await done(client, await client.delete(f"/v1/tables/{table_id}"))
    [entry] = await trash_of(client)
    await done(client, await client.delete(f"/v1/trash/{entry['trash_id']}"))
    assert not [t for t in physical_tables(engine_url) if t.startswith(TRASH_PREFIX)]
    before = await counts(service)
    for r in (
        await client.post(f"/v1/trash/{entry['trash_id']}/restore"),
        await client.delete(f"/v1/trash/{entry['trash_id']}"),
    ):
        assert r.status_code == 410 and error_of(r)["code"] == "purged"
    assert await counts(service) == before


@pytest.mark.parametrize("engine_url", ["postgresql"], indirect=True)
async def test_purge_true_drops_at_once_and_a_table_without_key_warns(
    client: httpx.AsyncClient, engine_url: str
) -> None:
    table_id = await new_table(client, "quick")
    await done(client, await client.delete(f"/v1/tables/{table_id}?purge=true"))
    assert physical_tables(engine_url) == [] and await trash_of(client) == []
    shown = (await client.post("/table/show", json={"table_id": table_id})).json()["table"]
    assert (shown["exists"], shown["trashed"]) == (False, False)
    trashed = (await client.get("/v1/tables?include_trashed=true")).json()["items"]
    deleted = (await client.get("/v1/tables?include_deleted=true")).json()["items"]
    assert table_id not in {t["table_id"] for t in trashed} and table_id in {t["table_id"] for t in deleted}

    engine = sa.create_engine(engine_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE loose (a integer, b text)"))
    engine.dispose()
    r = await client.post("/v1/tables/track", json={"name": "loose"})
    tracked = str((await done(client, r))["table_id"])
    dry = (await client.delete(f"/v1/tables/{tracked}/columns/b?dry_run=true")).json()
    assert any("no primary key" in w for w in dry["warnings"]), dry
    answer = await done(client, await client.delete(f"/v1/tables/{tracked}/columns/b"))
    assert any("no primary key" in w for w in answer["warnings"]), answer
    assert await trash_of(client) == []


@pytest.mark.parametrize("engine_url", ["sqlite"], indirect=True)
async def test_retention_purges_what_is_due_and_nothing_else(
    client: httpx.AsyncClient, service: Container, engine_url: str
) -> None:
    due, kept = await new_table(client, "due"), await new_table(client, "kept")
    service.tables.trash_retention_s = 1
    await done(client, await client.delete(f"/v1/tables/{due}"))
    service.tables.trash_retention_s = 3600
    await done(client, await client.delete(f"/v1/tables/{kept}"))
    entries = {e["table"]: e for e in await trash_of(client)}
    deadline = asyncio.get_running_loop().time() + 20
    while (await client.get(f"/v1/trash/{entries['due']['trash_id']}")).json()["status"] != "purged":
        assert asyncio.get_running_loop().time() < deadline, "the due entry was not purged"
        await asyncio.sleep(0.1)
    assert [e["table"] for e in await trash_of(client)] == ["kept"]
    assert len([t for t in physical_tables(engine_url) if t.startswith(TRASH_PREFIX)]) == 1
    # rows: null when the trash table is gone, a count while it is there
    assert (await client.get(f"/v1/trash/{entries['due']['trash_id']}")).json()["rows"] is None
    assert (await client.get(f"/v1/trash/{entries['kept']['trash_id']}")).json()["rows"] == 0
    # the purge was an operation of the table, like any other
    operations = (await client.get(f"/v1/operations?table_id={due}")).json()
    assert [(o["kind"], o["status"]) for o in operations if o["kind"] == "purge_trash"] == [
        ("purge_trash", "completed")
    ]


@pytest.mark.parametrize("engine_url", ["sqlite"], indirect=True)
async def test_with_the_trash_off_a_deletion_drops_at_once(
    settings_factory: Callable[..., Settings], engine_url: str
) -> None:
    async with running_service(settings_factory(engine_url, trash_retention="0")) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            table_id = await new_table(c, "plain", [{"name": "v", "type": "text"}])
            await done(c, await c.delete(f"/v1/tables/{table_id}/columns/v"))
            await done(c, await c.delete(f"/v1/tables/{table_id}"))
            assert physical_tables(engine_url) == [] and await trash_of(c) == []


@pytest.mark.parametrize("engine_url", ["sqlite"], indirect=True)
async def test_the_cli_lists_restores_and_purges(
    client: httpx.AsyncClient, service: Container, engine_url: str
) -> None:
    s = service.settings
    env = {
        "SCHEMASAGA_DATABASE_URL": str(s.database_url),
        "SCHEMASAGA_BYODB_URL": str(s.byodb_url),
        "SCHEMASAGA_SECRET_KEY": s.secret_key.get_secret_value() if s.secret_key else "",
        "SCHEMASAGA_SQLITE_DIR": str(s.sqlite_dir),
    }

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(
            CliRunner().invoke, main, ["trash", *args], env=env, catch_exceptions=False
        )

    table_id = await new_table(client, "kept")
    await done(client, await client.delete(f"/v1/tables/{table_id}"))
    listed = await cli("list", "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert (entry["kind"], entry["table"], entry["rows"], entry["status"]) == ("table", "kept", 0, "trashed")
    restored = await cli("restore", entry["trash_id"], "--name", "kept_again")
    assert restored.exit_code == 0, restored.output
    operation = await wait_operation(client, restored.output.strip())
    assert operation["status"] == "completed" and operation["kind"] == "restore_table"
    assert (await wait_synced(client, table_id))["name"] == "kept_again"
    again = await cli("purge", entry["trash_id"])
    assert again.exit_code == 1 and "purged" in again.output
    assert json.loads((await cli("list", "--json")).output) == []


@pytest.mark.parametrize("engine_url", ["sqlite"], indirect=True)
async def test_the_python_client_reaches_the_trash(service: Container, engine_url: str) -> None:
    transport = httpx.ASGITransport(app=service.web_app())
    async with AsyncClient("http://schemasaga", transport=transport) as client:
        accepted = await client.tables.create("kept", columns=[{"name": "v", "type": "text"}])
        await client.operations.wait(accepted)
        await client.operations.wait(await client.columns.remove(accepted.table_id, "v"))
        await client.operations.wait(await client.tables.delete(accepted.table_id))
        entries = await client.trash.list(database="default")
        assert [(e.kind, e.column) for e in entries] == [("table", None), ("column", "v")]
        assert (await client.trash.get(entries[1].trash_id)).rows == 0
        await client.operations.wait(await client.trash.purge(entries[1].trash_id))
        restored = await client.operations.wait(await client.trash.restore(entries[0].trash_id, name="again"))
        assert restored.status == "completed"
        assert (await client.tables.show(accepted.table_id)).name == "again"
        assert await client.trash.list() == []
        other = await client.tables.create("quick")
        await client.operations.wait(other)
        await client.operations.wait(await client.tables.delete(other.table_id, purge=True))
        assert await client.trash.list() == []


@pytest.mark.parametrize("engine_url", ["postgresql", "mysql"], indirect=True)
async def test_an_undo_of_a_deletion_or_a_removal_restores_from_the_trash(
    client: httpx.AsyncClient, engine_url: str
) -> None:
    table_id = await new_table(client, "undone", [{"name": "score", "type": "integer", "default": 3}])
    fill(engine_url, "undone", [{"id": i, "name": f"n{i}", "score": i} for i in range(1, ROWS + 1)])
    before = checksum(engine_url, "undone", ["id", "name", "score"])
    shown_before = (await wait_synced(client, table_id))["columns"]

    removal = (await done(client, await client.delete(f"/v1/tables/{table_id}/columns/score")))[
        "operation_id"
    ]
    deletion = (await done(client, await client.delete(f"/v1/tables/{table_id}")))["operation_id"]
    plan = await client.post(f"/v1/operations/{deletion}/undo?dry_run=true")
    assert plan.status_code == 200 and "from the trash" in plan.json()["warnings"][0], plan.text
    undo = await done(client, await client.post(f"/v1/operations/{deletion}/undo"))
    assert (await client.get(f"/v1/operations/{undo['operation_id']}")).json()["undoes"] == deletion
    assert (await client.get(f"/v1/operations/{deletion}")).json()["undone_by"] == undo["operation_id"]
    await done(client, await client.post(f"/v1/operations/{removal}/undo"))
    assert checksum(engine_url, "undone", ["id", "name", "score"]) == before
    shown = await wait_synced(client, table_id)
    assert (shown["exists"], shown["columns"]) == (True, shown_before)
    assert await trash_of(client) == []
    again = await client.post(f"/v1/operations/{deletion}/undo")
    assert again.status_code == 409 and error_of(again)["code"] == "already_undone", again.text


@pytest.mark.parametrize("engine_url", ["postgresql", "sqlite"], indirect=True)
async def test_an_undo_of_a_creation_moves_the_table_to_the_trash_and_its_undo_brings_it_back(
    client: httpx.AsyncClient, engine_url: str
) -> None:
    r = await client.post("/v1/tables", json={"name": "born", "columns": [{"name": "n", "type": "integer"}]})
    table_id, creation = str(r.json()["table_id"]), (await done(client, r))["operation_id"]
    await wait_synced(client, table_id)
    fill(engine_url, "born", [{"id": i, "name": f"b{i}", "n": i} for i in range(1, ROWS + 1)])
    before = checksum(engine_url, "born", ["id", "name", "n"])
    # A later change depends on the table: the creation's undo names it.
    added = (
        await done(
            client, await client.post(f"/v1/tables/{table_id}/columns", json={"name": "x", "type": "text"})
        )
    )["operation_id"]
    conflict = await client.post(f"/v1/operations/{creation}/undo")
    assert conflict.status_code == 409 and error_of(conflict)["code"] == "undo_conflict", conflict.text
    assert error_of(conflict)["details"] == {"operation_id": added}
    await done(client, await client.post(f"/v1/operations/{added}/undo"))

    undo = (await done(client, await client.post(f"/v1/operations/{creation}/undo")))["operation_id"]
    shown = await wait_synced(client, table_id)
    assert (shown["exists"], shown["trashed"]) == (False, True)
    assert "born" not in physical_tables(engine_url)
    # The undone column's values went to the trash too (an undo that drops keeps).
    assert sorted((e["kind"], e["column"], e["rows"]) for e in await trash_of(client)) == [
        ("column", "x", ROWS),
        ("table", None, ROWS),
    ]
    assert (await client.get(f"/v1/operations/{creation}")).json()["undone_by"] == undo
    # The undo of the undo (a redo of the creation) restores the table with every row.
    await done(client, await client.post(f"/v1/operations/{undo}/undo"))
    assert checksum(engine_url, "born", ["id", "name", "n"]) == before
    assert (await wait_synced(client, table_id))["exists"] is True


async def test_a_change_writes_only_the_trash_entries_it_changed(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    """The trash keeps every entry of a table, restored and purged ones too: the read model's projection
    of a change writes the entries that change moved (here, the purged one), not every entry the table
    ever had (which made each change of a table cost more with every column it had removed)."""
    async with running_service(settings_factory(byodb_pg_url)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            table_id = await new_table(
                client, "kept", [{"name": f"c{i}", "type": "integer"} for i in range(3)]
            )
            for i in range(3):
                await done(client, await client.delete(f"/v1/tables/{table_id}/columns/c{i}"))
            first, second, third = await trash_of(client)
            async with container.pool.connection() as conn:
                # A row no change of the table has moved since: nothing writes it again.
                await conn.execute(
                    "UPDATE rm_trash SET status = 'marked' WHERE trash_id = %s", (first["trash_id"],)
                )
            await done(client, await client.delete(f"/v1/trash/{second['trash_id']}"))
            await done(
                client,
                await client.post(f"/v1/tables/{table_id}/columns", json={"name": "d", "type": "integer"}),
            )
            async with container.pool.connection() as conn:
                rows = await (await conn.execute("SELECT trash_id::text, status FROM rm_trash")).fetchall()
    assert dict(rows) == {
        first["trash_id"]: "marked",
        second["trash_id"]: "purged",
        third["trash_id"]: "trashed",
    }
