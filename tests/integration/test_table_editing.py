"""Table editing over HTTP (issue 8): tables created with their own columns and indexes, what `show`
answers about them, plans that write nothing, and changes refused on a stale version."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import sqlalchemy as sa

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.test_saga_flow import counts, run_sql


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


async def created(client: httpx.AsyncClient, body: dict[str, object]) -> dict[str, object]:
    r = await client.post("/v1/tables", json=body)
    assert r.status_code == 202, r.text
    operation = await wait_operation(client, r.json()["operation_id"])
    assert operation["status"] == "completed", operation["last_error"]
    return await wait_synced(client, r.json()["table_id"])


async def test_a_table_is_created_with_its_own_columns_after_the_default_ones(
    client: httpx.AsyncClient,
) -> None:
    table = await created(
        client,
        {
            "name": "people",
            "columns": [
                {"name": "email", "type": "string", "nullable": False},
                {"name": "age", "type": "integer"},
            ],
        },
    )
    assert list(table["columns"]) == ["id", "name", "created_at", "updated_at", "email", "age"]
    assert table["columns"]["email"] == {
        "name": "email",
        "type": "string",
        "nullable": False,
        "default": None,
        "primary_key": False,
        "unique": False,
    }
    assert table["primary_key"] == ["id"] and table["indexes"] == []


async def test_show_answers_the_version_as_an_etag(client: httpx.AsyncClient) -> None:
    table = await created(client, {"name": "tagged"})
    r = await client.get(f"/v1/tables/{table['table_id']}")
    assert r.headers["etag"] == f'"{table["version"]}"' and r.json()["version"] == table["version"]


async def test_a_change_on_a_stale_version_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, service: Container
) -> None:
    table = await created(client, {"name": "stale"})
    stale = f'"{int(table["version"]) - 1}"'  # type: ignore[call-overload]
    before = await counts(service)
    for method, path, body in [
        ("POST", "/columns", {"name": "age", "type": "integer"}),
        ("DELETE", "/columns/name", None),
        ("DELETE", "", None),
        ("PATCH", "", {"name": "renamed"}),
    ]:
        r = await client.request(
            method, f"/v1/tables/{table['table_id']}{path}", json=body, headers={"If-Match": stale}
        )
        assert r.status_code == 412, (method, path, r.text)
        assert error_of(r)["code"] == "version_mismatch"
    assert await counts(service) == before
    # The current version is taken.
    r = await client.post(
        f"/v1/tables/{table['table_id']}/columns",
        json={"name": "age", "type": "integer"},
        headers={"If-Match": f'"{table["version"]}"'},
    )
    assert r.status_code == 202, r.text
    await wait_operation(client, r.json()["operation_id"])


async def test_a_dry_run_answers_the_plan_and_writes_nothing(
    client: httpx.AsyncClient, service: Container
) -> None:
    table = await created(client, {"name": "planned"})
    before = await counts(service)
    r = await client.post(
        f"/v1/tables/{table['table_id']}/columns?dry_run=true", json={"name": "age", "type": "bigint"}
    )
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["status"] == "planned" and plan["engine"] == "postgresql"
    assert [s["sql"] for s in plan["statements"]] == ['ALTER TABLE "planned" ADD COLUMN "age" BIGINT']
    assert plan["statements"][0]["lock"] == "ACCESS EXCLUSIVE"
    assert list(plan["columns"]) == ["id", "name", "created_at", "updated_at", "age"]
    r = await client.post("/v1/tables?dry_run=true", json={"name": "never"})
    assert r.status_code == 200 and r.json()["statements"][0]["sql"].startswith('CREATE TABLE "never"')
    r = await client.delete(f"/v1/tables/{table['table_id']}?dry_run=true&purge=true")
    assert r.status_code == 200 and r.json()["warnings"] == ["the table's rows are dropped with it"]
    r = await client.delete(f"/v1/tables/{table['table_id']}?dry_run=true")
    assert r.status_code == 200 and "kept in the trash" in r.json()["warnings"][0]
    assert " RENAME TO " in r.json()["statements"][0]["sql"]
    assert await counts(service) == before
    assert (await client.get(f"/v1/tables/{table['table_id']}")).json()["version"] == table["version"]


async def test_the_plan_is_recorded_with_the_operation(client: httpx.AsyncClient) -> None:
    table = await created(client, {"name": "recorded"})
    r = await client.post(f"/v1/tables/{table['table_id']}/columns", json={"name": "note", "type": "text"})
    operation = await wait_operation(client, r.json()["operation_id"])
    assert operation["status"] == "completed"
    assert [s["sql"] for s in operation["detail"]["plan"]["statements"]] == [
        'ALTER TABLE "recorded" ADD COLUMN "note" TEXT'
    ]


async def test_bad_columns_and_indexes_are_refused_and_write_nothing(
    client: httpx.AsyncClient, service: Container
) -> None:
    before = await counts(service)
    for body, status, code in [
        (
            {"name": "t", "columns": [{"name": "n", "type": "integer", "default": "abc"}]},
            422,
            "invalid_default",
        ),
        ({"name": "t", "columns": [{"name": "n", "type": "varchar"}]}, 422, "invalid_column"),
        ({"name": "t", "columns": [{"name": "id", "type": "text"}]}, 409, "column_exists"),
        ({"name": "t", "indexes": [{"columns": ["missing"]}]}, 404, "column_not_found"),
        ({"name": "t", "indexes": [{"columns": ["name"]}, {"columns": ["name"]}]}, 409, "index_exists"),
        ({"name": "t", "indexes": [{"columns": []}]}, 422, "invalid_request"),
    ]:
        r = await client.post("/v1/tables", json=body)
        assert r.status_code == status, (body, r.text)
        assert error_of(r)["code"] == code, (body, r.text)
    assert await counts(service) == before


async def test_a_table_the_database_has_already_is_never_taken_over_silently(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    run_sql(
        byodb_pg_url,
        "CREATE TABLE users_own (id integer PRIMARY KEY, name text, created_at timestamp, "
        "updated_at timestamp)",
    )  # the very shape schemasaga would make
    run_sql(byodb_pg_url, "INSERT INTO users_own (id, name) VALUES (1, 'keep me')")
    before = await counts(service)
    # The plan says so before anything is asked for.
    r = await client.post("/v1/tables", params={"dry_run": True}, json={"name": "users_own"})
    assert r.status_code == 200, r.text
    assert any("refused as it stands" in w and "track" in w for w in r.json()["warnings"]), r.text
    for name in ("users_own", "USERS_OWN"):
        r = await client.post("/v1/tables", json={"name": name})
        assert r.status_code == 409, r.text
        assert error_of(r)["code"] == "table_exists_unmanaged" and "track" in error_of(r)["message"]
    assert await counts(service) == before
    # Tracking is the explicit way: the live schema becomes the metadata, and no DDL runs.
    r = await client.post("/v1/tables/track", json={"name": "users_own"})
    assert r.status_code == 202, r.text
    operation = await wait_operation(client, r.json()["operation_id"])
    assert operation["status"] == "completed" and operation["kind"] == "track_table"
    table = await wait_synced(client, r.json()["table_id"])
    assert list(table["columns"]) == ["id", "name", "created_at", "updated_at"]
    assert table["exists"] is True and table["primary_key"] == ["id"]
    assert query(byodb_pg_url, "SELECT name FROM users_own") == [("keep me",)]
    # Once managed, its name is taken like any other's.
    r = await client.post("/v1/tables", json={"name": "users_own"})
    assert r.status_code == 409 and error_of(r)["code"] == "name_taken"
    r = await client.post("/v1/tables/track", json={"name": "users_own"})
    assert r.status_code == 409 and error_of(r)["code"] == "name_taken"


async def test_tracking_a_table_that_is_not_there_is_refused(
    client: httpx.AsyncClient, service: Container
) -> None:
    before = await counts(service)
    r = await client.post("/v1/tables/track", json={"name": "nowhere"})
    assert r.status_code == 404 and error_of(r)["code"] == "table_not_found"
    r = await client.post("/v1/tables/track", json={"name": "nowhere", "database": "nodb"})
    assert r.status_code == 404 and error_of(r)["code"] == "database_not_found"
    assert await counts(service) == before


async def test_a_step_that_waits_for_a_lock_shows_who_holds_it(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    # Many attempts, so the operation is still retrying while it is looked at.
    settings = settings_factory(
        byodb_pg_url, retry_max_attempts=50, retry_base_delay=0.2, retry_max_delay=0.2
    )
    async with (
        running_service(settings) as service,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service.web_app()), base_url="http://schemasaga"
        ) as client,
    ):
        table = await created(client, {"name": "held"})
        engine = sa.create_engine(byodb_pg_url)
        try:
            with engine.connect() as holder:
                holder.execute(sa.text("SELECT count(*) FROM held"))  # an open transaction's ACCESS SHARE
                holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                r = await client.post(
                    f"/v1/tables/{table['table_id']}/columns", json={"name": "n", "type": "text"}
                )
                operation_id = r.json()["operation_id"]
                blocked: list[dict[str, object]] = []
                for _ in range(200):
                    operation = (await client.get(f"/v1/operations/{operation_id}")).json()
                    blocked = operation["detail"].get("blocked_by") or []
                    if blocked:
                        break
                    await asyncio.sleep(0.05)
                assert operation["status"] in ("pending", "running")
                assert "lock" in (operation["last_error"] or "")
                assert [b["session"] for b in blocked] == [str(holder_pid)]
                assert "SELECT" in str(blocked[0]["query"]) and blocked[0]["held_for_s"] is not None
                holder.rollback()
            operation = await wait_operation(client, operation_id)
            assert operation["status"] == "completed", operation["last_error"]
        finally:
            engine.dispose()


async def test_a_table_is_created_with_defaults_uniques_and_indexes_as_show_says(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table = await created(
        client,
        {
            "name": "shop",
            "columns": [
                {"name": "sku", "type": "string", "nullable": False, "unique": True},
                {"name": "price", "type": "decimal", "default": "9.90"},
                {"name": "active", "type": "boolean", "default": True},
            ],
            "indexes": [
                {"columns": ["price", "active"]},
                {"columns": ["name"], "unique": True, "name": "shop_nm"},
            ],
        },
    )
    assert table["columns"]["price"]["default"] == "9.9" and table["columns"]["sku"]["unique"] is True
    assert table["indexes"] == [
        {"name": "shop_price_active_idx", "columns": ["price", "active"], "unique": False},
        {"name": "shop_nm", "columns": ["name"], "unique": True},
    ]
    # An independent reader: SQLAlchemy's inspector.
    engine = sa.create_engine(byodb_pg_url)
    try:
        inspector = sa.inspect(engine)
        indexes = {i["name"]: (i["column_names"], bool(i["unique"])) for i in inspector.get_indexes("shop")}
        uniques = [u["column_names"] for u in inspector.get_unique_constraints("shop")]
        defaults = {c["name"]: c["default"] for c in inspector.get_columns("shop")}
    finally:
        engine.dispose()
    assert indexes["shop_price_active_idx"] == (["price", "active"], False)
    assert indexes["shop_nm"] == (["name"], True)
    assert ["sku"] in uniques or any(cols == (["sku"], True) for cols in indexes.values())
    assert defaults["price"] is not None and "9.9" in defaults["price"]
    assert defaults["active"] == "true"


async def test_rows_a_change_cannot_keep_refuse_it_before_any_ddl(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    table = await created(client, {"name": "members", "columns": [{"name": "email", "type": "text"}]})
    run_sql(
        byodb_pg_url,
        "INSERT INTO members (id, email) VALUES (1, 'a@x'), (2, 'a@x'), (3, NULL), (4, 'b@x'), (5, NULL)",
    )
    url = f"/v1/tables/{table['table_id']}/columns/email"
    before = await counts(service)
    for patch, count, keys in [({"nullable": False}, 2, [3, 5]), ({"unique": True}, 2, [1, 2])]:
        r = await client.patch(url, json=patch)
        assert r.status_code == 409, r.text
        error = error_of(r)
        assert error["code"] == "incompatible_rows"
        assert error["details"]["count"] == count and sorted(error["details"]["primary_keys"]) == keys
        # The plan says so too, and writes nothing either.
        r = await client.patch(url + "?dry_run=true", json=patch)
        assert r.status_code == 200 and any("refused" in w for w in r.json()["warnings"]), r.text
    r = await client.patch(url, json={"type": "integer"})
    assert r.status_code == 409 and error_of(r)["details"]["count"] == 3  # 'a@x' x2, 'b@x'
    assert await counts(service) == before
    # Once the rows fit, the same change is taken.
    run_sql(byodb_pg_url, "DELETE FROM members WHERE email IS NULL")
    r = await client.patch(url, json={"nullable": False})
    assert r.status_code == 202, r.text
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"


async def test_a_table_that_appears_before_its_creation_runs_is_refused_and_left_as_it_is(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    # Accepted while no worker runs; then the user makes a table of that name, of the very shape
    # schemasaga would make. Found "done" by the create step, it would be taken over (and a later
    # delete would drop its rows); the first run of the saga knows it did not make it.
    settings = settings_factory(byodb_pg_url)
    async with running_service(settings, worker=False) as service:
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            r = await client.post("/v1/tables", json={"name": "late"})
            assert r.status_code == 202, r.text
            table_id, operation_id = r.json()["table_id"], r.json()["operation_id"]
    run_sql(
        byodb_pg_url,
        "CREATE TABLE late (id integer PRIMARY KEY, name text, created_at timestamp, updated_at timestamp)",
    )
    run_sql(byodb_pg_url, "INSERT INTO late (id, name) VALUES (1, 'keep me')")
    async with running_service(settings) as service:
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            operation = await wait_operation(client, operation_id)
            assert operation["status"] == "rejected", operation
            assert "track" in (operation["last_error"] or "") + str(operation["detail"]), operation
            table = await wait_synced(client, table_id)
            assert table["exists"] is False
    assert query(byodb_pg_url, "SELECT id, name FROM late") == [(1, "keep me")]
