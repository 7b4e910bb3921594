"""`projections rebuild` online: the new read models are built beside the live ones while the service
serves and writes, caught up and swapped in; it resumes after a kill, keeps a second rebuild out, waits
for the live tables' lock, and gives back exactly the read models the events make (table by table, as the
reference event-by-event rebuild makes them), with the operations' columns that no event says (`starts`,
`running`) carried over."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from schemasaga.bootstrap import Container
from schemasaga.coredb.readmodels import rebuild as reference_rebuild
from schemasaga.coredb.rebuild import OnlineRebuild, Progress, RebuildRunning
from tests.integration.conftest import TEST_SECRET_KEY, wait_operation, wait_synced
from tests.integration.test_saga_flow import create_table, run_sql

QUERIES = {
    "rm_tables": "SELECT * FROM rm_tables ORDER BY table_id",
    "rm_operations": "SELECT to_jsonb(o) - 'starts' AS row FROM rm_operations o ORDER BY operation_id",
    "rm_databases": "SELECT * FROM rm_databases ORDER BY name",
    "rm_trash": "SELECT * FROM rm_trash ORDER BY trash_id",
}
STARTS = "SELECT operation_id, starts, status FROM rm_operations ORDER BY operation_id"
# The read models' definitions: what the swap must leave exactly as schema.sql makes them (the new tables get
# their keys and indexes only after the build, by name, and a resumed rebuild may find some there already).
RM = r"LIKE 'rm\_%'"
NEW = "schemaname = 'schemasaga_rebuild'"
CATALOG = {
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
    f"FROM information_schema.columns WHERE table_schema = 'public' AND table_name {RM} ORDER BY 1, 2",
    "constraints": "SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) "
    "FROM pg_constraint "
    f"WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text {RM} ORDER BY 1, 2",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes "
    f"WHERE schemaname = 'public' AND tablename {RM} ORDER BY 1, 2",
    "triggers": "SELECT tgrelid::regclass::text AS t, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
    f"WHERE NOT tgisinternal AND tgrelid::regclass::text {RM} ORDER BY 1, 2",
    "relations": "SELECT relname, relkind, relpersistence FROM pg_class "
    f"WHERE relnamespace = 'public'::regnamespace AND relname {RM} ORDER BY 1",
}


async def rows(conn: psycopg.AsyncConnection[Any], query: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query)
        return await cur.fetchall()


async def live(service: Container) -> dict[str, list[dict[str, Any]]]:
    async with service.pool.connection() as conn:
        return {name: await rows(conn, q) for name, q in QUERIES.items()}


async def catalog(service: Container) -> dict[str, list[dict[str, Any]]]:
    async with service.pool.connection() as conn:
        return {name: await rows(conn, q) for name, q in CATALOG.items()}


async def reference(service: Container) -> dict[str, list[dict[str, Any]]]:
    """The read models the reference rebuild (event by event, in one transaction) makes; rolled back."""
    async with service.pool.connection() as conn:
        async with conn.transaction(force_rollback=True):
            await reference_rebuild(conn, service.store)
            return {name: await rows(conn, q) for name, q in QUERIES.items()}


async def some_history(client: httpx.AsyncClient, byodb_pg_url: str, files_url: str) -> list[str]:
    r = await client.post("/v1/databases", json={"name": "files", "url": files_url})
    assert r.status_code == 201, r.text
    kept = await create_table(client, "kept")
    await wait_synced(client, kept)
    for body in (
        {"table_id": kept, "column": {"name": "age", "type": "integer"}},
        {"table_id": kept, "column": {"name": "name"}},
    ):
        assert (await client.post("/table/column", json=body)).status_code == 200
        await wait_synced(client, kept)
    run_sql(byodb_pg_url, "CREATE VIEW kept_ages AS SELECT age FROM kept")  # a rejection
    r = await client.post("/table/column", json={"table_id": kept, "column": {"name": "age"}})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "rejected"
    # A name given up and taken again.
    gone = await create_table(client, "reused")
    await wait_synced(client, gone)
    r = await client.post("/table/delete", json={"table_id": gone})
    await wait_operation(client, r.json()["operation_id"])
    again = await create_table(client, "reused")
    others = [await create_table(client, f"other_{i}") for i in range(4)]
    for t in [again, *others]:
        await wait_synced(client, t)
    return [kept, again, *others]


async def test_online_rebuild_while_the_service_writes(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str, byodb_sqlite_url: str
) -> None:
    tables = await some_history(client, byodb_pg_url, byodb_sqlite_url)
    async with service.pool.connection() as conn:
        starts_before = await rows(conn, STARTS)
    assert any(r["starts"] > 0 for r in starts_before)
    before = await live(service)
    assert before == await reference(service)
    assert before["rm_trash"]  # the deleted table and the removed column are in the trash

    # A long reader of the live read models holds the swap back (its lock times out, it catches up and
    # tries again) while the service writes: new tables (streams the build's list did not have) and a
    # change of a table built already. All of it is caught up before the swap.
    seen: list[Progress] = []
    conninfo = service.resolved.core_conninfo
    async with await psycopg.AsyncConnection.connect(conninfo) as reader:
        await reader.execute("SELECT count(*) FROM rm_tables")
        job = OnlineRebuild(conninfo, service.store, batch_size=2, report=seen.append, lock_timeout=0.1)
        task = asyncio.create_task(job.run())
        while "swap" not in [p.phase for p in seen]:
            await asyncio.sleep(0.02)
        new_ones = [await create_table(client, f"during_{i}") for i in range(3)]
        body = {"table_id": tables[0], "column": {"name": "later", "type": "text"}}
        assert (await client.post("/table/column", json=body)).status_code == 200
        for t in [*new_ones, tables[0]]:
            await wait_synced(client, t)
        assert not task.done()
        await reader.rollback()
        out = await task

    assert out.tables == len(tables) + 4 and out.databases == 2 and out.caught_up_streams >= 4
    assert gc.isenabled()  # off for the build only
    phases = [p.phase for p in seen]
    assert phases[0] == "build" and phases[-1] == "done" and "swap" in phases
    assert seen[-1].streams_done == seen[-1].streams_total
    after = await live(service)
    assert after == await reference(service)  # table by table, row by row
    names = {r["name"] for r in after["rm_tables"]}
    assert {"during_0", "during_2", "kept", "reused"} <= names
    assert "later" in str(next(r["columns"] for r in after["rm_tables"] if r["name"] == "kept"))
    # What no event says survived the swap: how many times each operation was started.
    async with service.pool.connection() as conn:
        starts_after = {r["operation_id"]: r["starts"] for r in await rows(conn, STARTS)}
        trigger = await rows(conn, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'rm_operations'::regclass")
        left = await rows(conn, "SELECT nspname FROM pg_namespace WHERE nspname = 'schemasaga_rebuild'")
    for r in starts_before:
        assert starts_after[r["operation_id"]] == r["starts"], r
    assert [t["tgname"] for t in trigger] == ["rm_operations_finished_notify"] and left == []
    # The service goes on with the new read models: a change, waited on (the trigger's NOTIFY).
    r = await client.post(f"/v1/tables/{tables[1]}/columns?wait=20", json={"name": "x", "type": "integer"})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


async def test_a_second_rebuild_is_refused_and_the_swap_waits_for_the_lock(
    client: httpx.AsyncClient, service: Container
) -> None:
    await wait_synced(client, await create_table(client, "one"))
    before = await live(service)
    conninfo = service.resolved.core_conninfo
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(hashtextextended('schemasaga projections rebuild', 0))")
        with pytest.raises(RebuildRunning):
            await OnlineRebuild(conninfo, service.store).run()
    seen: list[str] = []
    async with await psycopg.AsyncConnection.connect(conninfo) as reader:
        # A long reader of the live read models: the swap's lock times out, it catches up and retries.
        await reader.execute("SELECT count(*) FROM rm_tables")
        job = OnlineRebuild(conninfo, service.store, lock_timeout=0.1, report=lambda p: seen.append(p.phase))
        task = asyncio.create_task(job.run())
        while seen.count("swap") < 3:
            await asyncio.sleep(0.05)
        assert not task.done()
        await reader.rollback()
        await task
    assert await live(service) == before


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMASAGA_")}
    return subprocess.run(
        [sys.executable, "-m", "schemasaga.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_killed_rebuild_resumes_after_its_last_batch(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str, byodb_sqlite_url: str
) -> None:
    await some_history(client, byodb_pg_url, byodb_sqlite_url)
    schema = await catalog(service)
    assert len(schema["indexes"]) > 10 and schema["constraints"] and schema["triggers"]
    env = {
        "SCHEMASAGA_DATABASE_URL": service.settings.database_url or "",
        "SCHEMASAGA_BYODB_URL": service.settings.byodb_url or "",
        "SCHEMASAGA_SECRET_KEY": TEST_SECRET_KEY,
        "SCHEMASAGA_SQLITE_DIR": str(service.settings.sqlite_dir),
    }
    # Two processes fold each batch (this one and a helper): their rows are COPYed in one transaction.
    args = ("projections", "rebuild", "--batch-size", "3", "--progress-every", "0", "--workers", "2")
    killed = await asyncio.to_thread(cli, *args, **env, SCHEMASAGA_KILL_AT="rebuild:after_batch")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    async with service.pool.connection() as conn:
        progress = await rows(conn, "SELECT done, total FROM schemasaga_rebuild.progress")
    assert progress[0]["done"] == 3 and progress[0]["total"] > 3
    # Written between the kill and the resume: caught up before the swap.
    late = await create_table(client, "late")
    await wait_synced(client, late)

    # Killed again once built, indexed and caught up, in the swap's transaction: the next run finds the new
    # tables' keys and indexes there, and keeps them.
    killed = await asyncio.to_thread(cli, *args, **env, SCHEMASAGA_KILL_AT="rebuild:before_swap")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert "rebuild build: " in killed.stderr and "events/s" in killed.stderr, killed.stderr
    async with service.pool.connection() as conn:
        progress = await rows(conn, "SELECT done, total FROM schemasaga_rebuild.progress")
        built = await rows(conn, f"SELECT indexname FROM pg_indexes WHERE tablename {RM} AND {NEW}")
    assert progress[0]["done"] == progress[0]["total"]
    rebuilt = ("rm_tables", "rm_operations", "rm_trash", "rm_databases")
    wanted = {r["indexname"] for r in schema["indexes"] if r["tablename"] in rebuilt}
    assert {r["indexname"] for r in built} == wanted

    done = await asyncio.to_thread(cli, *args, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed after {progress[0]['total']} streams" in done.stdout, done.stdout
    assert await live(service) == await reference(service)
    assert "late" in {r["name"] for r in (await live(service))["rm_tables"]}
    # Exactly the live schema's columns, keys, constraints, indexes and triggers, under the same names.
    assert await catalog(service) == schema
