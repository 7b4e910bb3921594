"""Visibility against the real service in-process (real core database, real BYODB, a real worker):
``/metrics`` moves with what the service does, ``/readyz`` fails with the check that failed, and the
log lines are JSON carrying the ids of the work in hand.

The metrics are this process's (prometheus_client's registry), shared by every test of the run: each
test compares the values before and after what it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict

from schemasaga.bootstrap import Container, open_container
from schemasaga.config import Settings
from schemasaga.observability import logs
from schemasaga.sql import migration_names
from schemasaga.worker import run_worker
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.test_saga_flow import create_table, run_sql

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextlib.asynccontextmanager
async def app_client(container: Container, *, with_worker: bool = False) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=container.web_app(with_worker=with_worker))
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
        yield client


async def eventually(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout}s (last: {result!r})")
        await asyncio.sleep(0.05)


# -- /metrics ---------------------------------------------------------------------------------------


async def test_metrics_move_after_a_completed_saga(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    table_id = await create_table(client, "measured")
    await wait_synced(client, table_id)
    assert (await client.get(f"/v1/tables/{table_id}")).status_code == 200
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    pg = {"kind": "create_table", "engine": "postgresql"}
    assert delta("schemasaga_operations_accepted_total", **pg) == 1
    assert delta("schemasaga_operations_finished_total", **pg, outcome="completed") == 1
    assert delta("schemasaga_saga_duration_seconds_count", **pg, outcome="completed") == 1
    for step in ("create_table", "verify"):
        assert delta("schemasaga_saga_step_duration_seconds_count", **pg, step=step) == 1
    # TableCreated, two SagaStepCompleted, TableCreationConfirmed.
    assert delta("schemasaga_events_appended_total", category="table") == 4
    # By route template and status: one label value for every table, never the raw path.
    create = {"method": "POST", "route": "/table/create", "status": "200"}
    assert delta("schemasaga_http_request_duration_seconds_count", **create) == 1
    show = {"method": "GET", "route": "/v1/tables/{table_id}", "status": "200"}
    assert delta("schemasaga_http_request_duration_seconds_count", **show) == 1
    assert not any(table_id in dict(labels).get("route", "") for _, labels in after)
    assert value(after, "schemasaga_core_database_up") == 1
    assert value(after, "schemasaga_jobs", state="doing") == 0


async def test_retries_and_rejections_are_counted_with_their_cause(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory("postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    async with running_service(settings) as container, app_client(container) as client:
        before = await scrape(client)
        r = await client.post("/table/create", json={"name": "lost"})
        assert r.status_code == 200
        op = await wait_operation(client, r.json()["operation_id"])
        after = await scrape(client)
    assert op["status"] == "rejected"
    pg = {"kind": "create_table", "engine": "postgresql"}
    # Refused connections: psycopg's OperationalError, retried until the last attempt, which rejects.
    retries = {**pg, "cause": "OperationalError"}
    assert value(after, "schemasaga_saga_retries_total", **retries) - value(
        before, "schemasaga_saga_retries_total", **retries
    ) == (settings.retry_max_attempts - 1)
    rejected = {**pg, "outcome": "rejected"}
    assert (
        value(after, "schemasaga_operations_finished_total", **rejected)
        - value(before, "schemasaga_operations_finished_total", **rejected)
        == 1
    )


async def test_queue_depth_and_the_oldest_waiting_job(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    async with running_service(settings_factory(byodb_pg_url), worker=False) as container:
        async with app_client(container) as client:
            empty = await scrape(client)
            assert value(empty, "schemasaga_jobs", state="ready") == 0
            assert value(empty, "schemasaga_oldest_ready_job_age_seconds") == 0
            for name in ("q1", "q2"):
                await create_table(client, name)

            async def waiting() -> Samples | None:
                s = await scrape(client)
                return s if value(s, "schemasaga_oldest_ready_job_age_seconds") > 0 else None

            queued = await eventually("the oldest job's age shows", waiting)
            assert value(queued, "schemasaga_jobs", state="ready") == 2
            assert value(queued, "schemasaga_jobs", state="doing") == 0
            # A worker drains it.
            worker = asyncio.create_task(run_worker(container.worker, concurrency=2, stop_on_signals=False))
            try:

                async def drained() -> bool:
                    s = await scrape(client)
                    return (
                        value(s, "schemasaga_jobs", state="ready")
                        + value(s, "schemasaga_jobs", state="doing")
                        == 0
                    )

                await eventually("the queue is drained", drained)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker


async def test_jobs_of_a_dead_worker_count_as_recovered(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    async with running_service(settings_factory(byodb_pg_url), worker=False) as container:
        async with app_client(container) as client:
            table_id = await create_table(client, "orphan")
            # The job, taken by a worker that then died: `doing` under a worker with no recent heartbeat.
            async with container.pool.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')"
                    " RETURNING id"
                )
                row = await cur.fetchone()
                assert row is not None
                await conn.execute(
                    "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE status = 'todo'",
                    (row[0],),
                )
            before = await scrape(client)
            worker = asyncio.create_task(run_worker(container.worker, concurrency=2, stop_on_signals=False))
            try:
                await wait_synced(client, table_id)
                after = await scrape(client)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
    recovered = "schemasaga_jobs_recovered_total"
    stalled = value(after, recovered, reason="stalled_worker") - value(
        before, recovered, reason="stalled_worker"
    )
    assert stalled == 1


async def test_drift_found_is_shown_per_database(client: httpx.AsyncClient, byodb_pg_url: str) -> None:
    for name in ("kept", "tampered"):
        await wait_synced(client, await create_table(client, name))
    r = await client.get("/v1/databases/default/drift")
    assert r.status_code == 200
    assert value(await scrape(client), "schemasaga_drifted_tables", database="default") == 0
    run_sql(byodb_pg_url, "ALTER TABLE tampered DROP COLUMN name")
    r = await client.get("/v1/databases/default/drift")
    assert r.status_code == 200
    assert value(await scrape(client), "schemasaga_drifted_tables", database="default") == 1


# -- /readyz ----------------------------------------------------------------------------------------


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    r = await client.get("/readyz")
    body: dict[str, Any] = r.json()
    return r.status_code, body


async def test_readyz_fails_when_the_worker_stops(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    async with open_container(settings_factory(byodb_pg_url)) as container:
        async with app_client(container, with_worker=True) as client:
            status, body = await readiness(client)
            assert status == 503 and body["checks"]["worker"]["ok"] is False  # not started yet
            worker = asyncio.create_task(run_worker(container.worker, concurrency=2, stop_on_signals=False))
            try:
                await eventually("ready", lambda: _status_is(client, 200))
                status, body = await readiness(client)
                assert body == {
                    "status": "ready",
                    "checks": {
                        "core_database": {"ok": True, "detail": None},
                        "schema": {"ok": True, "detail": None},
                        "worker": {"ok": True, "detail": None},
                    },
                }
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            status, body = await readiness(client)
            assert status == 503
            assert body["status"] == "not_ready"
            assert body["checks"]["worker"] == {"ok": False, "detail": "the worker is not running"}
            assert body["checks"]["core_database"]["ok"] is True
            # Liveness is another question: the process answers.
            assert (await client.get("/healthz")).status_code == 200


async def _status_is(client: httpx.AsyncClient, status: int) -> bool:
    return (await client.get("/readyz")).status_code == status


async def test_readyz_fails_when_the_core_database_is_unreachable(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, core_db: str, pg_server: str
) -> None:
    dbname = conninfo_to_dict(core_db)["dbname"]
    async with open_container(settings_factory(byodb_pg_url)) as container, app_client(container) as client:
        assert await readiness(client) == (
            200,
            {
                "status": "ready",
                "checks": {
                    "core_database": {"ok": True, "detail": None},
                    "schema": {"ok": True, "detail": None},
                },
            },
        )
        with refusing_connections(pg_server, str(dbname)):
            status, body = await readiness(client)
            assert status == 503
            assert body["status"] == "not_ready"
            assert body["checks"]["core_database"]["ok"] is False
            assert body["checks"]["core_database"]["detail"]
            assert body["checks"]["schema"] == {"ok": False, "detail": "not checked"}
            # /metrics still answers, saying it could not read the queue.
            assert value(await scrape(client), "schemasaga_core_database_up") == 0
        await eventually("ready again", lambda: _status_is(client, 200))


@contextlib.contextmanager
def refusing_connections(server: str, dbname: str) -> Iterator[None]:
    """The database refuses new connections and its open ones are closed: unreachable, for the service."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {dbname} WITH ALLOW_CONNECTIONS false")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
    try:
        yield
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {dbname} WITH ALLOW_CONNECTIONS true")


LAST_MIGRATION = migration_names()[-1]


async def test_readyz_fails_when_the_schema_is_behind(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    async with open_container(settings_factory(byodb_pg_url)) as container, app_client(container) as client:
        async with container.pool.connection() as conn:
            await conn.execute("DELETE FROM schemasaga_migrations WHERE name = %s", (LAST_MIGRATION,))
        status, body = await readiness(client)
    assert status == 503
    assert body["checks"]["schema"] == {"ok": False, "detail": f"missing: {LAST_MIGRATION}"}
    assert body["checks"]["core_database"]["ok"] is True


# -- logs -------------------------------------------------------------------------------------------


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The process's logs, at DEBUG, in the service's JSON format, into a buffer."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    logs.configure(level="DEBUG", log_format="json", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
            root.removeHandler(handler)
        root.setLevel(level)


async def test_log_lines_are_json_with_the_request_and_operation_ids(
    json_logs: io.StringIO, client: httpx.AsyncClient, service: Container
) -> None:
    r = await client.post("/table/create", json={"name": "logged"}, headers={"X-Request-Id": "req-visible-1"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-visible-1"
    operation_id = r.json()["operation_id"]
    await wait_operation(client, operation_id)
    # A request without one gets a new id, in its answer and in the metadata of its events.
    r = await client.post("/table/create", json={"name": "logged_too"})
    generated = r.headers["x-request-id"]
    assert len(generated) == 36
    async with service.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT metadata->>'request_id' FROM event_store_events WHERE event_type = 'TableCreated'"
            " AND data->>'operation_id' = %s",
            (r.json()["operation_id"],),
        )
        assert await cur.fetchall() == [(generated,)]

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    # The job's deferral was logged while the request was handled.
    in_request = [line for line in lines if line.get("request_id") == "req-visible-1"]
    assert in_request
    # The worker's lines about the saga carry its operation and correlation ids.
    outcome = [line for line in lines if line["message"].startswith(f"operation {operation_id}")]
    assert outcome and outcome[-1]["operation_id"] == operation_id
    assert outcome[-1]["correlation_id"] == operation_id
    assert "request_id" not in outcome[-1]
