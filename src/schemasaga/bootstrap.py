"""The composition root: builds the pool, stores, services, the procrastinate app and the worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import procrastinate
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.adapter import DdlLimits
from schemasaga.catalog import DEFAULT_DATABASE, DatabaseCatalog
from schemasaga.config import Settings
from schemasaga.embedded import EmbeddedPostgres
from schemasaga.eventstore import EventStore
from schemasaga.jobs.app import JobScheduler, create_app, stalled_job_watchdog
from schemasaga.migrations import upgrade
from schemasaga.repository import TableRepository
from schemasaga.sagas.runner import RetryPolicy, SagaRunner
from schemasaga.services import TableService

log = logging.getLogger(__name__)

CORE_DATABASE = "schemasaga"
EMBEDDED_BYODB = "byodb"


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where the databases are, once the embedded server (if any) is up."""

    core_conninfo: str
    byodb_url: str
    embedded: EmbeddedPostgres | None


def resolve_databases(settings: Settings) -> Resolved:
    """Start or attach to the embedded PostgreSQL when no core URL is configured."""
    embedded: EmbeddedPostgres | None = None
    core, byodb = settings.database_url, settings.byodb_url
    if core is None:
        embedded = EmbeddedPostgres(settings.data_dir)
        embedded.start()
        embedded.ensure_database(CORE_DATABASE)
        core = embedded.conninfo(CORE_DATABASE)
        if byodb is None:
            embedded.ensure_database(EMBEDDED_BYODB)
            byodb = embedded.sqlalchemy_url(EMBEDDED_BYODB)
    if byodb is None:
        raise SystemExit("SCHEMASAGA_BYODB_URL must be set when SCHEMASAGA_DATABASE_URL is")
    return Resolved(core_conninfo=_libpq(core), byodb_url=byodb, embedded=embedded)


def _libpq(url: str) -> str:
    # Accept SQLAlchemy-style URLs for the core database too.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


@dataclass
class Container:
    settings: Settings
    resolved: Resolved
    pool: AsyncConnectionPool[Any]
    store: EventStore
    repository: TableRepository
    jobs: procrastinate.App
    scheduler: JobScheduler
    catalog: DatabaseCatalog
    tables: TableService
    runner: SagaRunner


@asynccontextmanager
async def open_container(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Container]:
    resolved = await asyncio.to_thread(resolve_databases, settings)
    try:
        if migrate:
            await asyncio.to_thread(upgrade, resolved.core_conninfo)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            resolved.core_conninfo,
            min_size=2,
            max_size=max(10, settings.worker_concurrency * 2 + 4),
            open=False,
            # Replace connections broken by a core database restart instead of failing a request.
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": 5},
        )
        await pool.open(wait=True, timeout=30)
        jobs = create_app()
        await jobs.open_async(pool)
        catalog = DatabaseCatalog(
            limits=DdlLimits(
                lock_timeout_ms=settings.ddl_lock_timeout_ms,
                statement_timeout_ms=settings.ddl_statement_timeout_ms,
                connect_timeout_s=settings.byodb_connect_timeout,
            )
        )
        catalog.register(DEFAULT_DATABASE, resolved.byodb_url)
        store = EventStore(pool)
        repository = TableRepository(store, snapshot_every=settings.snapshot_every)
        scheduler = JobScheduler(jobs)
        tables = TableService(pool=pool, repository=repository, scheduler=scheduler, catalog=catalog)
        runner = SagaRunner(
            pool=pool,
            repository=repository,
            scheduler=scheduler,
            catalog=catalog,
            retry=RetryPolicy(
                max_attempts=settings.retry_max_attempts,
                base_delay=settings.retry_base_delay,
                max_delay=settings.retry_max_delay,
            ),
        )
        container = Container(
            settings, resolved, pool, store, repository, jobs, scheduler, catalog, tables, runner
        )
        try:
            yield container
        finally:
            await jobs.close_async()
            await pool.close()
            catalog.close()
    finally:
        if resolved.embedded is not None:
            await asyncio.to_thread(resolved.embedded.stop)


async def run_worker(container: Container, *, concurrency: int, install_signal_handlers: bool) -> None:
    """Run saga jobs until cancelled or signalled; the job in hand is finished first."""
    s = container.settings
    watchdog = asyncio.create_task(
        stalled_job_watchdog(
            container.jobs,
            stalled_after=s.stalled_worker_timeout,
            every=max(1.0, s.stalled_worker_timeout / 3),
        )
    )
    try:
        await container.jobs.run_worker_async(
            concurrency=concurrency,
            fetch_job_polling_interval=s.job_polling_interval,
            update_heartbeat_interval=s.heartbeat_interval,
            stalled_worker_timeout=s.stalled_worker_timeout,
            additional_context={"saga_runner": container.runner},
            install_signal_handlers=install_signal_handlers,
            delete_jobs="successful",
        )
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
