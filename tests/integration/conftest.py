"""In-process service fixtures: a container on a fresh core database and a fresh BYODB, a worker
running in the background of the test's event loop, and an HTTP client on the real ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from psycopg_pool import AsyncConnectionPool

from schemasaga.bootstrap import Container, open_container
from schemasaga.config import Settings
from schemasaga.eventstore import EventStore
from schemasaga.worker import run_worker

# One encryption key for the in-process services of this run (BYODB credentials are stored encrypted).
TEST_SECRET_KEY = Fernet.generate_key().decode()


def fast_settings(**overrides: Any) -> Settings:
    """Settings with short retry delays and quick stalled-job detection, for tests."""
    values: dict[str, Any] = {
        "retry_base_delay": 0.05,
        "retry_max_delay": 0.2,
        "retry_max_attempts": 3,
        "job_polling_interval": 0.1,
        "heartbeat_interval": 0.5,
        "stalled_worker_timeout": 3.0,
        "ddl_lock_timeout_ms": 500,
        "byodb_connect_timeout": 2,
        "worker_concurrency": 4,
        "secret_key": TEST_SECRET_KEY,
        # The in-process clients' base URLs (http://schemasaga, http://t) and Starlette's test client's
        # (testserver), beside the loopback names the service answers by default.
        "allowed_hosts": "localhost,127.0.0.1,::1,schemasaga,t,testserver",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def pool(core_db: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """A connection pool on the test's fresh core database."""
    p: AsyncConnectionPool[Any] = AsyncConnectionPool(core_db, open=False, min_size=1, max_size=24)
    await p.open(wait=True)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def store(pool: AsyncConnectionPool[Any]) -> EventStore:
    return EventStore(pool)


@pytest.fixture
def settings_factory(core_db: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(byodb_url: str, **overrides: Any) -> Settings:
        # The tests' SQLite files are in tmp_path: that is where registered ones may be.
        overrides.setdefault("sqlite_dir", tmp_path)
        return fast_settings(database_url=core_db, byodb_url=byodb_url, **overrides)

    return make


@contextlib.asynccontextmanager
async def running_service(settings: Settings, *, worker: bool = True) -> AsyncIterator[Container]:
    async with open_container(settings) as container:
        task = (
            asyncio.create_task(run_worker(container.worker, concurrency=4, stop_on_signals=False))
            if worker
            else None
        )
        try:
            yield container
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@pytest.fixture
async def service(settings_factory: Callable[..., Settings], byodb_pg_url: str) -> AsyncIterator[Container]:
    """The whole service (API container plus a worker) on PostgreSQL core and PostgreSQL BYODB."""
    async with running_service(settings_factory(byodb_pg_url)) as container:
        yield container


@pytest.fixture
async def client(service: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=service.web_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        yield c


async def wait_synced(client: httpx.AsyncClient, table_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
    """Poll /table/show until no change is in flight; returns the table."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await client.post("/table/show", json={"table_id": table_id})
        assert r.status_code == 200, r.text
        table: dict[str, Any] = r.json()["table"]
        if table["synced"]:
            return table
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"table {table_id} not synced after {timeout}s: {table}")
        await asyncio.sleep(0.05)


async def wait_operation(
    client: httpx.AsyncClient, operation_id: str, *, timeout: float = 20.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await client.get(f"/v1/operations/{operation_id}")
        assert r.status_code == 200, r.text
        op: dict[str, Any] = r.json()
        if op["status"] in ("completed", "rejected"):
            return op
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"operation {operation_id} not finished after {timeout}s: {op}")
        await asyncio.sleep(0.05)
