"""Drift made behind the service's back is detected, recorded once, repaired or adopted; and
``schemasaga verify`` fails on it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.services.drift import DriftDetector
from tests.conftest import create_database, drop_database, error_of, pg_sqlalchemy_url, with_dbname
from tests.integration.conftest import TEST_SECRET_KEY, running_service, wait_operation, wait_synced
from tests.integration.test_saga_flow import create_table, physical_columns, run_sql


async def settled_table(client: httpx.AsyncClient, name: str) -> str:
    table_id = await create_table(client, name)
    await wait_synced(client, table_id)
    return table_id


async def drift_of(client: httpx.AsyncClient) -> dict[str, object]:
    r = await client.get("/v1/databases/default/drift")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_drift_is_reported_per_table_with_unmanaged_tables_apart(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "drifty")
    await settled_table(client, "steady")
    assert (await drift_of(client))["clean"] is True
    run_sql(
        byodb_pg_url,
        "ALTER TABLE drifty ADD COLUMN extra text",
        "ALTER TABLE drifty DROP COLUMN name",
        "ALTER TABLE drifty ALTER COLUMN created_at TYPE text",
        "CREATE TABLE stranger (x integer)",
    )
    report = await drift_of(client)
    assert report["clean"] is False
    assert report["unmanaged_tables"] == ["stranger"]
    [table] = report["tables"]  # type: ignore[misc]
    assert table["table_id"] == table_id
    issues = {(i["issue"], i["column"]) for i in table["issues"]}
    assert issues == {
        ("missing_column", "name"),
        ("type_mismatch", "created_at"),
        ("extra_column", "extra"),
    }


async def test_repair_brings_the_physical_table_back_to_the_metadata(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "mended")
    run_sql(byodb_pg_url, "ALTER TABLE mended ADD COLUMN extra text", "ALTER TABLE mended DROP COLUMN name")
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
    assert r.status_code == 202, r.text
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "completed" and op["kind"] == "repair"
    live = physical_columns(byodb_pg_url, "mended")
    assert live is not None and set(live) == {"id", "name", "created_at", "updated_at"}
    assert (await drift_of(client))["clean"] is True


async def test_repair_recreates_a_missing_table(client: httpx.AsyncClient, byodb_pg_url: str) -> None:
    table_id = await settled_table(client, "vanished")
    run_sql(byodb_pg_url, "DROP TABLE vanished")
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "completed"
    assert physical_columns(byodb_pg_url, "vanished") is not None


async def test_repair_refuses_a_type_change_and_keeps_everything(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "retyped")
    run_sql(byodb_pg_url, "ALTER TABLE retyped ALTER COLUMN name TYPE integer USING 0")
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "rejected" and "adopt" in op["last_error"]
    table = await wait_synced(client, table_id)
    assert table["columns"]["name"]["type"] == "text"
    live = physical_columns(byodb_pg_url, "retyped")
    assert live is not None and live["name"]["type"] == "integer"


async def test_adopt_records_the_live_schema_as_metadata(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "adopted")
    run_sql(
        byodb_pg_url,
        "ALTER TABLE adopted ADD COLUMN score bigint NOT NULL DEFAULT 0",
        "ALTER TABLE adopted DROP COLUMN updated_at",
        "ALTER TABLE adopted ALTER COLUMN name TYPE integer USING 0",
    )
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "adopt"})
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "completed" and op["kind"] == "adopt"
    table = await wait_synced(client, table_id)
    assert set(table["columns"]) == {"id", "name", "created_at", "score"}
    assert table["columns"]["name"]["type"] == "integer"
    assert table["columns"]["score"]["type"] == "bigint" and table["columns"]["score"]["nullable"] is False
    assert (await drift_of(client))["clean"] is True
    events = (await client.get(f"/v1/tables/{table_id}/events")).json()
    assert "TableSchemaAdopted" in [e["event_type"] for e in events]


async def test_reconcile_rejects_bad_strategy(client: httpx.AsyncClient) -> None:
    table_id = await settled_table(client, "strict")
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "rewrite"})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_request"


async def test_drift_is_recorded_once_until_it_changes(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "watched")
    detector = DriftDetector(uow=service.uow, reads=service.reads, connections=service.connections)
    await detector.scan("default", record=True)
    run_sql(byodb_pg_url, "ALTER TABLE watched ADD COLUMN extra text")
    for _ in range(2):
        await detector.scan("default", record=True)
    run_sql(byodb_pg_url, "ALTER TABLE watched DROP COLUMN extra")
    await detector.scan("default", record=True)
    events = (await client.get(f"/v1/tables/{table_id}/events")).json()
    drift_events = [e["data"]["issues"] for e in events if e["event_type"] == "TableDriftDetected"]
    # Once when it appeared, once when it went away.
    assert drift_events == [[{"issue": "extra_column", "column": "extra", "actual": "text"}], []]


async def test_verify_and_drift_commands_fail_on_divergence(
    client: httpx.AsyncClient, core_db: str, byodb_pg_url: str
) -> None:
    await settled_table(client, "audited")
    env = {
        **os.environ,
        "SCHEMASAGA_DATABASE_URL": core_db,
        "SCHEMASAGA_BYODB_URL": byodb_pg_url,
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
    }
    cmd = [sys.executable, "-m", "schemasaga.cli", "verify", "--wait", "10"]
    drift_cmd = [sys.executable, "-m", "schemasaga.cli", "drift", "--json"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout
    assert subprocess.run(drift_cmd, env=env, capture_output=True, timeout=60).returncode == 0
    run_sql(byodb_pg_url, "ALTER TABLE audited DROP COLUMN name")
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "missing column 'name'" in bad.stdout
    drifted = subprocess.run(drift_cmd, env=env, capture_output=True, text=True, timeout=60)
    assert drifted.returncode == 1, drifted.stderr
    [report] = json.loads(drifted.stdout)
    assert report["tables"][0]["issues"] == [{"issue": "missing_column", "column": "name"}]


async def test_the_worker_scans_periodically_and_records_new_drift(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:

    async with running_service(settings_factory(byodb_pg_url, drift_scan_interval=0.2)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            table_id = await settled_table(client, "scanned")
            run_sql(byodb_pg_url, "ALTER TABLE scanned ADD COLUMN sneaky integer")
            deadline = asyncio.get_running_loop().time() + 15
            found: list[object] = []
            while not found and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
                events = (await client.get(f"/v1/tables/{table_id}/events")).json()
                found = [e for e in events if e["event_type"] == "TableDriftDetected"]
    assert found, "no TableDriftDetected event recorded by the periodic scan"


async def test_a_table_that_cannot_be_read_is_its_own_drift_and_the_others_are_still_checked(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    viewed = await settled_table(client, "viewed")
    drifty = await settled_table(client, "drifty")
    run_sql(
        byodb_pg_url,
        "DROP TABLE viewed",
        "CREATE VIEW viewed AS SELECT 1 AS id",
        "ALTER TABLE drifty DROP COLUMN name",
    )
    report = await drift_of(client)
    issues = {t["table_id"]: t["issues"] for t in report["tables"]}  # type: ignore[attr-defined]
    assert issues[drifty] == [{"issue": "missing_column", "column": "name"}]
    [unreadable] = issues[viewed]
    assert unreadable["issue"] == "unreadable" and "view" in unreadable["detail"]


async def test_drift_of_a_database_that_cannot_be_read_is_a_clear_error(
    client: httpx.AsyncClient, pg_server: str, core_db: str, byodb_pg_url: str
) -> None:
    other = create_database(pg_server)
    try:
        url = pg_sqlalchemy_url(with_dbname(pg_server, other))
        assert (await client.post("/v1/databases", json={"name": "other", "url": url})).status_code == 201
    finally:
        drop_database(pg_server, other)  # gone behind the service's back

    r = await client.get("/v1/databases/other/drift")
    assert r.status_code == 503, r.text
    assert error_of(r)["code"] == "database_unavailable"
    r = await client.get("/v1/databases/nowhere/drift")
    assert r.status_code == 404 and error_of(r)["code"] == "database_not_found"

    env = {
        **os.environ,
        "SCHEMASAGA_DATABASE_URL": core_db,
        "SCHEMASAGA_BYODB_URL": byodb_pg_url,
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
    }
    for args in (["drift"], ["drift", "--database", "nowhere"], ["verify"]):
        out = subprocess.run(
            [sys.executable, "-m", "schemasaga.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        assert "NOT CHECKED" in out.stdout, out.stdout
    # The database that can be read is still checked and reported.
    assert (
        "database default: 0 checked"
        in subprocess.run(
            [sys.executable, "-m", "schemasaga.cli", "drift"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )


async def test_a_column_renamed_in_case_only_is_drift_and_its_twin_is_extra(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "cased")
    run_sql(
        byodb_pg_url,
        'ALTER TABLE cased RENAME COLUMN name TO "Name"',
        'ALTER TABLE cased ADD COLUMN "ID" integer',  # on PostgreSQL another column than id
    )
    [table] = (await drift_of(client))["tables"]  # type: ignore[misc]
    assert table["table_id"] == table_id
    assert sorted(table["issues"], key=lambda i: i["issue"]) == [
        {"issue": "extra_column", "column": "ID", "actual": "integer"},
        {"issue": "name_mismatch", "column": "name", "actual": "Name"},
    ]
    # Repair does not rename columns (it would guess); adopt takes the live names.
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "rejected"
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "adopt"})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
    assert (await drift_of(client))["clean"] is True
    assert "Name" in (await wait_synced(client, table_id))["columns"]


async def test_repair_drops_a_twin_column_and_never_the_one_it_resembles(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await settled_table(client, "twins")
    run_sql(
        byodb_pg_url,
        "INSERT INTO twins (id, name) VALUES (1, 'kept')",
        'ALTER TABLE twins ADD COLUMN "NAME" text',
    )
    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
    live = physical_columns(byodb_pg_url, "twins")
    assert live is not None and "NAME" not in live and "name" in live
    assert (await drift_of(client))["clean"] is True


async def test_read_only_commands_do_not_change_the_default_database(
    client: httpx.AsyncClient, service: Container, core_db: str, tmp_path: Any
) -> None:
    before = [e.event_type for e in await service.store.read_stream("Database$default")]
    env = {
        **os.environ,
        "SCHEMASAGA_DATABASE_URL": core_db,
        "SCHEMASAGA_BYODB_URL": f"sqlite:///{tmp_path / 'elsewhere.db'}",  # not what the service uses
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
    }
    for args in (["verify"], ["drift"], ["events", "show", "6f1c1c1e-0000-4000-8000-000000000000"]):
        subprocess.run(
            [sys.executable, "-m", "schemasaga.cli", *args], env=env, capture_output=True, timeout=60
        )
    after = [e.event_type for e in await service.store.read_stream("Database$default")]
    assert after == before
    assert (await client.get("/v1/databases/default")).json()["engine"] == "postgresql"


async def test_an_adopted_sqlite_integer_primary_key_is_consistent_everywhere(
    settings_factory: Callable[..., Settings], byodb_sqlite_url: str
) -> None:
    """SQLite's ``id INTEGER PRIMARY KEY`` inspects as nullable. Once adopted, drift, the saga's
    verification and the adapter's idempotency check must all call the table what it is: before one
    schema diff decided for all three, a repair of it failed its own verification."""
    async with running_service(settings_factory(byodb_sqlite_url)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            table_id = await settled_table(client, "handmade")
            run_sql(
                byodb_sqlite_url,
                "DROP TABLE handmade",
                "CREATE TABLE handmade (id INTEGER PRIMARY KEY, label TEXT)",
            )
            r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "adopt"})
            assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
            table = await wait_synced(client, table_id)
            assert table["columns"]["id"] == {
                "name": "id",
                "type": "integer",
                "nullable": False,
                "default": None,
                "primary_key": True,
                "unique": False,
            }
            assert (await drift_of(client))["clean"] is True
            r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
            repaired = await wait_operation(client, r.json()["operation_id"])
            assert repaired["status"] == "completed", repaired["last_error"]
            # Gone behind our back, it is recreated from the adopted metadata, and that verifies.
            run_sql(byodb_sqlite_url, "DROP TABLE handmade")
            r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
            repaired = await wait_operation(client, r.json()["operation_id"])
            assert repaired["status"] == "completed", repaired["last_error"]
            assert (await drift_of(client))["clean"] is True
            # And changes to it verify too.
            r = await client.post("/table/column", json={"table_id": table_id, "column": {"name": "label"}})
            assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
            assert set((await wait_synced(client, table_id))["columns"]) == {"id"}
            assert (await drift_of(client))["clean"] is True


async def test_index_default_and_unique_drift_is_found_and_adopted(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    # Drift covers what table editing added: indexes, defaults, uniqueness. Repair does not recreate
    # them (yet): it refuses, changes nothing and names adopt.
    body = {
        "name": "shop",
        "columns": [
            {"name": "sku", "type": "string", "unique": True},
            {"name": "qty", "type": "integer", "default": 0},
        ],
        "indexes": [{"columns": ["qty"], "name": "shop_qty_idx"}],
    }
    r = await client.post("/v1/tables", json=body)
    assert r.status_code == 202, r.text
    table_id = r.json()["table_id"]
    await wait_operation(client, r.json()["operation_id"])
    run_sql(
        byodb_pg_url,
        "DROP INDEX shop_qty_idx",
        "ALTER TABLE shop ALTER COLUMN qty SET DEFAULT 5",
        # the unique index that makes sku unique, whatever its generated name
        "DO $$ DECLARE n text; BEGIN SELECT indexname INTO n FROM pg_indexes WHERE tablename = 'shop' "
        "AND indexdef LIKE 'CREATE UNIQUE%' AND indexname <> 'shop_pkey'; "
        "EXECUTE format('DROP INDEX %I', n); END $$",
    )
    report = (await client.get("/v1/databases/default/drift")).json()
    (mine,) = [t for t in report["tables"] if t["table_id"] == table_id]
    assert {i["issue"] for i in mine["issues"]} == {"missing_index", "default_mismatch", "unique_mismatch"}

    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"})
    repaired = await wait_operation(client, r.json()["operation_id"])
    assert repaired["status"] == "rejected" and "adopt" in repaired["last_error"], repaired

    r = await client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "adopt"})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
    table = await wait_synced(client, table_id)
    assert table["indexes"] == [], table
    assert (table["columns"]["sku"]["unique"], table["columns"]["qty"]["default"]) == (False, 5), table
    report = (await client.get("/v1/databases/default/drift")).json()
    assert [t for t in report["tables"] if t["table_id"] == table_id] == []
