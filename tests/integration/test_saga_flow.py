"""The demo's flow and the saga's failure classes, end to end on real PostgreSQL core and BYODB.

The API runs in-process on its real ASGI app; the worker runs in the test's event loop. The physical
schema is checked with SQLAlchemy's inspector, independently of the service's own adapter."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.domain.events import stream_name
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation, wait_synced


def physical_columns(url: str, table: str) -> dict[str, dict[str, Any]] | None:
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        if not insp.has_table(table):
            return None
        pk = set(insp.get_pk_constraint(table)["constrained_columns"])
        return {
            c["name"]: {"type": str(c["type"]).lower(), "nullable": c["nullable"], "pk": c["name"] in pk}
            for c in insp.get_columns(table)
        }
    finally:
        engine.dispose()


def run_sql(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(sa.text(s))
    finally:
        engine.dispose()


async def counts(container: Container) -> tuple[int, int]:
    """Events recorded and jobs ever deferred. (Jobs are counted by their id sequence, not their rows: a
    finished job's row is deleted a moment after its outcome is committed.)"""
    async with container.pool.connection() as conn:
        events = await (await conn.execute("SELECT count(*) FROM event_store_events")).fetchone()
        jobs = await (
            await conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM procrastinate_jobs_id_seq"
            )
        ).fetchone()
    assert events is not None and jobs is not None
    return int(events[0]), int(jobs[0])


async def create_table(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post("/table/create", json={"name": name})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    return str(body["table"]["table_id"])


async def test_demo_readme_flow(client: httpx.AsyncClient, service: Container, byodb_pg_url: str) -> None:
    r = await client.post("/table/create", json={"name": "my_new_table_123"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "table", "operation_id"} and body["status"] == "ok"
    table_id = body["table"]["table_id"]

    table = await wait_synced(client, table_id)
    assert table["exists"] is True and table["name"] == "my_new_table_123"
    assert table["columns"]["id"] == {
        "name": "id",
        "type": "integer",
        "nullable": False,
        "default": None,
        "primary_key": True,
        "unique": False,
    }
    assert set(table["columns"]) == {"id", "name", "created_at", "updated_at"}
    live = physical_columns(byodb_pg_url, "my_new_table_123")
    assert live is not None and set(live) == {"id", "name", "created_at", "updated_at"}
    assert live["id"]["pk"] and not live["id"]["nullable"]

    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    assert r.status_code == 200 and r.json()["status"] == "ok"
    table = await wait_synced(client, table_id)
    assert table["columns"]["age"]["type"] == "integer"
    live = physical_columns(byodb_pg_url, "my_new_table_123")
    assert live is not None and live["age"]["type"] == "integer"

    r = await client.post("/table/column", json={"table_id": table_id, "column": {"name": "age"}})
    assert r.status_code == 200
    table = await wait_synced(client, table_id)
    assert "age" not in table["columns"]
    live = physical_columns(byodb_pg_url, "my_new_table_123")
    assert live is not None and "age" not in live

    r = await client.post("/table/delete", json={"table_id": table_id})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    table = await wait_synced(client, table_id)
    assert table["exists"] is False
    assert physical_columns(byodb_pg_url, "my_new_table_123") is None

    events = (await client.get(f"/v1/tables/{table_id}/events")).json()
    outcome_types = [e["event_type"] for e in events if not e["event_type"].startswith("Saga")]
    assert outcome_types == [
        "TableCreated",
        "TableCreationConfirmed",
        "TableChanged",
        "TableChangeConfirmed",
        "TableChanged",
        "TableChangeConfirmed",
        "TableDeleted",
        "TableDeletionConfirmed",
    ]


async def test_operation_is_visible_with_its_steps(client: httpx.AsyncClient) -> None:
    r = await client.post("/table/create", json={"name": "ops_table"})
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["kind"] == "create_table"
    assert op["status"] == "completed"
    assert op["table_id"] == r.json()["table"]["table_id"]
    assert op["steps_done"] == ["create_table", "verify"]
    assert op["attempts"] == 1 and op["last_error"] is None
    assert (await client.get("/v1/operations/00000000-0000-0000-0000-000000000000")).status_code == 404


async def test_time_travel_shows_the_table_as_it_was(client: httpx.AsyncClient) -> None:
    table_id = await create_table(client, "travel")
    await wait_synced(client, table_id)
    await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    await wait_synced(client, table_id)
    then = (await client.get(f"/v1/tables/{table_id}", params={"at_version": 0})).json()
    assert then["synced"] is False and then["exists"] is False and "age" not in then["columns"]
    now = (await client.get(f"/v1/tables/{table_id}")).json()
    assert now["synced"] is True and "age" in now["columns"]


async def test_time_travel_never_shows_a_transaction_in_part(
    client: httpx.AsyncClient, service: Container
) -> None:
    table_id = await create_table(client, "atomic_travel")
    await wait_synced(client, table_id)
    events = await service.store.read_stream(stream_name(UUID(table_id)))
    # The saga's last step is recorded with the confirmation, in one transaction.
    [(step, confirmed)] = [
        (a, b)
        for a, b in itertools.pairwise(events)
        if (a.event_type, b.event_type) == ("SagaStepCompleted", "TableCreationConfirmed")
    ]
    async with service.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(DISTINCT tx_id) FROM event_store_events WHERE event_id = ANY(%s)",
            ([step.event_id, confirmed.event_id],),
        )
        assert await cur.fetchone() == (1,)
    assert step.created_at < confirmed.created_at

    then = await service.reads.table_at(UUID(table_id), version=None, moment=step.created_at)
    assert (then.version, then.synced, then.exists) == (confirmed.version, True, True)
    r = await client.get(f"/v1/tables/{table_id}", params={"at": step.created_at.isoformat()})
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["synced"], r.json()["exists"]) == (confirmed.version, True, True)


BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("/table/create", "{not json", 400, "malformed_json"),
    ("/table/create", {}, 422, "invalid_request"),
    ("/table/create", {"name": 12}, 422, "invalid_request"),
    ("/table/create", {"name": ""}, 422, "invalid_name"),
    ("/table/create", {"name": "1abc"}, 422, "invalid_name"),
    ("/table/create", {"name": "bad-name"}, 422, "invalid_name"),
    ("/table/create", {"name": "select"}, 422, "invalid_name"),
    ("/table/create", {"name": "x" * 64}, 422, "invalid_name"),
    ("/table/create", {"name": "ok_name", "database": "nope"}, 404, "database_not_found"),
    ("/table/create", {"name": "ok_name", "database": "no\u0000pe"}, 404, "database_not_found"),
    ("/table/delete", {"table_id": "not-a-uuid"}, 422, "invalid_table_id"),
    ("/table/delete", {"table_id": "6f1c1c1e-0000-4000-8000-000000000000"}, 404, "table_not_found"),
    ("/table/show", {"table_id": "6f1c1c1e-0000-4000-8000-000000000000"}, 404, "table_not_found"),
    (
        "/table/column",
        {"table_id": "6f1c1c1e-0000-4000-8000-000000000000", "column": {"name": "a"}},
        404,
        "table_not_found",
    ),
]


@pytest.mark.parametrize(("path", "body", "status", "code"), BAD_REQUESTS)
async def test_bad_input_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient, service: Container, path: str, body: Any, status: int, code: str
) -> None:
    before = await counts(service)
    if isinstance(body, str):
        r = await client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    assert error_of(r)["code"] == code
    assert error_of(r)["message"]
    assert await counts(service) == before


async def test_bad_changes_to_a_real_table_are_refused(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    table_id = await create_table(client, "target")
    await wait_synced(client, table_id)
    before = await counts(service)
    cases = [
        ({"table_id": table_id, "column": {"name": "age", "type": "varchar(5)"}}, 422, "invalid_column"),
        ({"table_id": table_id, "column": {"name": "nope"}}, 404, "column_not_found"),
        ({"table_id": table_id, "column": {"name": "id"}}, 422, "primary_key_column"),
        ({"table_id": table_id, "column": {"name": "name", "type": "text"}}, 409, "column_exists"),
        ({"table_id": table_id, "column": {"name": "order", "type": "text"}}, 422, "invalid_name"),
        ({"table_id": table_id, "column": {"name": "a b", "type": "text"}}, 422, "invalid_name"),
    ]
    for body, status, code in cases:
        r = await client.post("/table/column", json=body)
        assert (r.status_code, error_of(r)["code"]) == (status, code), (body, r.text)
    r = await client.post("/table/create", json={"name": "target"})
    assert (r.status_code, error_of(r)["code"]) == (409, "name_taken")
    assert await counts(service) == before
    live = physical_columns(byodb_pg_url, "target")
    assert live is not None and set(live) == {"id", "name", "created_at", "updated_at"}


async def test_adding_a_column_already_being_added_is_refused(client: httpx.AsyncClient) -> None:
    table_id = await create_table(client, "pending_add")
    # Creation is still in flight: both changes are validated against the intended state.
    r1 = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    r2 = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "text"}}
    )
    assert r1.status_code == 200
    assert (r2.status_code, error_of(r2)["code"]) == (409, "column_exists")
    table = await wait_synced(client, table_id)
    assert table["columns"]["age"]["type"] == "integer"


async def test_changes_to_a_deleted_table_are_refused(client: httpx.AsyncClient, service: Container) -> None:
    table_id = await create_table(client, "doomed")
    await client.post("/table/delete", json={"table_id": table_id})
    # Refused while the deletion is in flight...
    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "x", "type": "text"}}
    )
    assert (r.status_code, error_of(r)["code"]) == (409, "table_gone")
    # ...and once it is done; counted once the worker is done with the table, so that only the
    # refused commands could add anything.
    await wait_synced(client, table_id)
    before = await counts(service)
    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "x", "type": "text"}}
    )
    assert (r.status_code, error_of(r)["code"]) == (409, "table_gone")
    r = await client.post("/table/delete", json={"table_id": table_id})
    assert (r.status_code, error_of(r)["code"]) == (409, "table_gone")
    assert await counts(service) == before
    table = await wait_synced(client, table_id)
    assert table["exists"] is False
    # The name is free again once the table is deleted.
    assert (await client.post("/table/create", json={"name": "doomed"})).status_code == 200


async def test_a_table_created_behind_our_back_is_not_taken_over(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    run_sql(byodb_pg_url, "CREATE TABLE squatter (id text PRIMARY KEY, other integer)")
    before = await counts(service)
    r = await client.post("/table/create", json={"name": "squatter"})
    assert r.status_code == 409 and error_of(r)["code"] == "table_exists_unmanaged", r.text
    assert await counts(service) == before
    # The foreign table is left exactly as it was.
    live = physical_columns(byodb_pg_url, "squatter")
    assert live is not None and set(live) == {"id", "other"}


async def test_rejected_column_removal_keeps_the_column(client: httpx.AsyncClient, byodb_pg_url: str) -> None:
    table_id = await create_table(client, "keeper")
    await wait_synced(client, table_id)
    await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    await wait_synced(client, table_id)
    # A view depending on the column makes DROP COLUMN fail for good.
    run_sql(byodb_pg_url, "CREATE VIEW keeper_ages AS SELECT age FROM keeper")
    r = await client.post("/table/column", json={"table_id": table_id, "column": {"name": "age"}})
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "rejected" and "depend" in (op["last_error"] or "")
    table = await wait_synced(client, table_id)
    assert table["columns"]["age"]["type"] == "integer"
    live = physical_columns(byodb_pg_url, "keeper")
    assert live is not None and "age" in live


async def test_rejected_deletion_leaves_the_table(client: httpx.AsyncClient, byodb_pg_url: str) -> None:
    table_id = await create_table(client, "sticky")
    await wait_synced(client, table_id)
    run_sql(byodb_pg_url, "CREATE VIEW sticky_view AS SELECT id FROM sticky")
    # (a move to the trash is a rename, which the view follows: only a drop is refused)
    r = await client.delete(f"/v1/tables/{table_id}?purge=true")
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "rejected"
    table = await wait_synced(client, table_id)
    assert table["exists"] is True
    assert physical_columns(byodb_pg_url, "sticky") is not None
    # Still a live table: it accepts changes again.
    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "x", "type": "text"}}
    )
    assert r.status_code == 200


async def test_unreachable_byodb_is_retried_then_rejected(
    settings_factory: Callable[..., Settings],
) -> None:

    settings = settings_factory("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    async with running_service(settings) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/table/create", json={"name": "lost"})
            assert r.status_code == 200
            op = await wait_operation(client, r.json()["operation_id"])
            table = await wait_synced(client, r.json()["table"]["table_id"])
            # The console lists it as rejected, under that filter and not as deleted.
            row = f'href="/console/tables/{table["table_id"]}"'
            rejected = (await client.get("/console?status=rejected")).text
            assert row in rejected and '<span class="status rejected">rejected</span>' in rejected
            assert row not in (await client.get("/console?status=synced")).text
            assert '<span class="status deleted">' not in (await client.get("/console?status=deleted")).text
    assert op["status"] == "rejected"
    assert op["attempts"] == settings.retry_max_attempts
    assert "gave up after 3 attempts" in op["last_error"]
    assert table["exists"] is False


@contextlib.asynccontextmanager
async def locked_by_another_session(byodb_pg_url: str, table: str) -> AsyncIterator[None]:
    """``table`` locked (ACCESS EXCLUSIVE) by another session of the BYODB for the duration."""
    conninfo = byodb_pg_url.replace("postgresql+psycopg://", "postgresql://")
    taken, released = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(conninfo) as conn:
            conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            taken.set()
            released.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert await asyncio.to_thread(taken.wait, 10), "the lock was not taken"
        yield
    finally:
        released.set()
        holder.join()


async def test_lock_held_by_another_session_is_waited_out(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await create_table(client, "locked")
    await wait_synced(client, table_id)
    async with locked_by_another_session(byodb_pg_url, "locked"):
        r = await client.post(
            "/table/column", json={"table_id": table_id, "column": {"name": "c", "type": "text"}}
        )
        op_id = r.json()["operation_id"]
        # Let the first attempt hit the lock timeout (500 ms in tests) before releasing.
        await asyncio.sleep(0.8)
    op = await wait_operation(client, op_id)
    assert op["status"] == "completed"
    assert op["attempts"] >= 2
    live = physical_columns(byodb_pg_url, "locked")
    assert live is not None and "c" in live


async def test_a_table_being_deleted_keeps_its_name_until_the_deletion_is_confirmed(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    """Were the name free as soon as the deletion is accepted, a new table of that name would be
    accepted, find the old physical table and take it for its own (it is of the same shape), and
    then the old deletion would drop it; or the old deletion, rejected, could not be recorded."""
    table_id = await create_table(client, "reused")
    await wait_synced(client, table_id)
    async with locked_by_another_session(byodb_pg_url, "reused"):
        r = await client.post("/table/delete", json={"table_id": table_id})
        assert r.status_code == 200, r.text
        deletion = r.json()["operation_id"]
        r = await client.post("/table/create", json={"name": "reused"})
        assert r.status_code == 409, r.text
        assert error_of(r)["code"] == "name_taken"
        async with service.pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT table_id FROM rm_tables WHERE name = 'reused'")
            ).fetchall()
        assert [str(r[0]) for r in rows] == [table_id]  # the refused creation wrote nothing
        # Every attempt meets the lock: the deletion is rejected and the table keeps its name.
        op = await wait_operation(client, deletion)
        assert op["status"] == "rejected", op
    table = await wait_synced(client, table_id)
    assert table["exists"] is True and physical_columns(byodb_pg_url, "reused") is not None
    assert (await client.post("/table/create", json={"name": "reused"})).status_code == 409

    r = await client.post("/table/delete", json={"table_id": table_id})
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
    new_id = await create_table(client, "reused")
    new = await wait_synced(client, new_id)
    assert new["exists"] is True and physical_columns(byodb_pg_url, "reused") is not None


async def test_changes_to_one_table_apply_one_at_a_time_in_acceptance_order(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await create_table(client, "busy")
    names = [f"c{i:02d}" for i in range(16)]

    async def add(name: str) -> tuple[str, str]:
        r = await client.post(
            "/table/column", json={"table_id": table_id, "column": {"name": name, "type": "text"}}
        )
        assert r.status_code == 200, r.text
        return name, r.json()["operation_id"]

    await asyncio.gather(*(add(n) for n in names))
    table = await wait_synced(client, table_id, timeout=60)
    assert set(names) <= set(table["columns"])
    live = physical_columns(byodb_pg_url, "busy")
    assert live is not None and set(names) <= set(live)

    events = (await client.get(f"/v1/tables/{table_id}/events")).json()
    accepted = [
        e["data"]["operation_id"] for e in events if e["event_type"] in ("TableCreated", "TableChanged")
    ]
    progress = [
        e["data"]["operation_id"] for e in events if e["event_type"] not in ("TableCreated", "TableChanged")
    ]
    # Saga events of one operation never interleave with another's, and operations finish in the
    # order they were accepted.
    finished_order = list(dict.fromkeys(progress))
    assert finished_order == accepted
    assert progress == sorted(progress, key=accepted.index)


async def test_core_database_outage_answers_503_json_and_writes_nothing(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, core_db: str, pg_server: str
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    core_name = conninfo_to_dict(core_db)["dbname"]
    settings = settings_factory(byodb_pg_url, core_pool_timeout=1.0)
    async with running_service(settings, worker=False) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            events_before, jobs_before = await counts(container)
            with psycopg.connect(pg_server, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{core_name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (core_name,)
                )
                try:
                    r = await client.post("/table/create", json={"name": "during_outage"})
                finally:
                    admin.execute(f'ALTER DATABASE "{core_name}" ALLOW_CONNECTIONS true')
            assert r.status_code == 503, r.text
            assert error_of(r)["code"] == "core_unavailable"
            assert r.headers["retry-after"] == "1"
            # Back on its own (as a client honouring Retry-After sees it: the pool reconnects with a
            # backoff that grows with the failed attempts, more of them on a busy machine), and the
            # refused command left nothing.
            deadline = time.monotonic() + 15
            while True:
                r = await client.post("/table/create", json={"name": "during_outage"})
                if r.status_code != 503 or time.monotonic() > deadline:
                    break
                assert error_of(r)["code"] == "core_unavailable"
                await asyncio.sleep(float(r.headers["retry-after"]))
            assert r.status_code == 200, r.text
            assert await counts(container) == (events_before + 1, jobs_before + 1)


async def test_an_operation_whose_job_was_lost_gets_a_new_one(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    from schemasaga.worker import requeue_orphans

    settings = settings_factory(byodb_pg_url)
    async with running_service(settings, worker=False) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            table_id = await create_table(client, "orphaned")
            # As if its job had failed for good and been cleaned up.
            async with container.pool.connection() as conn:
                await conn.execute("DELETE FROM procrastinate_jobs")
            assert await requeue_orphans(container.uow, container.reads) == 1
            assert await requeue_orphans(container.uow, container.reads) == 0  # it has a job now
    async with running_service(settings) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            table = await wait_synced(client, table_id)
    assert table["exists"] is True
    assert physical_columns(byodb_pg_url, "orphaned") is not None


# An event trigger on the BYODB that changes an added `age integer` column to bigint: the add step
# succeeds, its verification fails, and the saga must compensate (drop the column) before rejecting.
RETYPE_AGE_TRIGGER = """
CREATE FUNCTION retype_age() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_name = 'victim' AND column_name = 'age' AND data_type = 'integer') THEN
    ALTER TABLE victim ALTER COLUMN age TYPE bigint;
  END IF;
END $$;
CREATE EVENT TRIGGER retype_age ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
  EXECUTE FUNCTION retype_age();
"""


async def test_a_failed_verification_is_compensated_before_rejection(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    table_id = await create_table(client, "victim")
    await wait_synced(client, table_id)
    run_sql(byodb_pg_url, RETYPE_AGE_TRIGGER)
    r = await client.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    op = await wait_operation(client, r.json()["operation_id"])
    assert op["status"] == "rejected" and "not as added" in op["last_error"]
    assert op["steps_done"] == ["add_column"] and op["detail"]["compensating"] is True
    events = [e["event_type"] for e in (await client.get(f"/v1/tables/{table_id}/events")).json()]
    assert events[-3:] == ["SagaStepCompleted", "SagaCompensationStarted", "TableChangeRejected"]
    table = await wait_synced(client, table_id)
    assert "age" not in table["columns"]
    live = physical_columns(byodb_pg_url, "victim")
    assert live is not None and "age" not in live


async def test_concurrent_commands_on_one_table_queue_instead_of_retrying(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    table_id = await create_table(client, "queued")
    await wait_synced(client, table_id)
    caplog.set_level(logging.DEBUG, logger="schemasaga.services.unit_of_work")

    async def add(i: int) -> int:
        body = {"table_id": table_id, "column": {"name": f"q{i:02d}", "type": "text"}}
        return (await client.post("/table/column", json=body)).status_code

    assert await asyncio.gather(*(add(i) for i in range(24))) == [200] * 24
    # Writers of the table wait on its stream lock; none lost a race it had to retry. (The worker's
    # first attempt at recording a step reuses the table it loaded before the step, and decides again
    # when a command was accepted meanwhile, as designed: its retries are not the commands'.)
    retried = [r.getMessage() for r in caplog.records if "changed concurrently" in r.getMessage()]
    assert [m for m in retried if "actor worker" not in m] == []
    await wait_synced(client, table_id, timeout=60)
