"""The composition root: builds the pool, stores, services, the procrastinate app and the worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import procrastinate.exceptions
import procrastinate.worker
import psycopg
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.adapter import DdlLimits
from schemasaga.catalog import DEFAULT_DATABASE, DatabaseCatalog
from schemasaga.config import Settings
from schemasaga.databases.service import DatabaseService
from schemasaga.databases.source import RegistrySource
from schemasaga.databases.urls import parse_database_url
from schemasaga.domain.errors import DomainError
from schemasaga.drift import DriftDetector, periodic_scan
from schemasaga.drift import Q as DRIFT_QUERIES
from schemasaga.embedded import EmbeddedPostgres
from schemasaga.eventstore import EventStore
from schemasaga.jobs.app import (
    JobScheduler,
    JobsInHand,
    create_app,
    keep_heartbeat,
    release_lost_jobs,
    stalled_job_watchdog,
)
from schemasaga.migrations import upgrade
from schemasaga.repository import TableRepository
from schemasaga.sagas.runner import RetryPolicy, SagaRunner
from schemasaga.secrets import SecretBox, SecretsError, resolve_secret_box
from schemasaga.services import TableService

log = logging.getLogger(__name__)

CORE_DATABASE = "schemasaga"
EMBEDDED_BYODB = "byodb"


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where the databases are, once the embedded server (if any) is up."""

    core_conninfo: str
    byodb_url: str = field(repr=False)  # may hold a password
    embedded: EmbeddedPostgres | None


def resolve_databases(settings: Settings, *, need_byodb: bool = True) -> Resolved:
    """Start or attach to the embedded PostgreSQL when no core URL is configured. Without
    ``need_byodb`` (a command that only touches the core database) the BYODB URL may be missing."""
    embedded: EmbeddedPostgres | None = None
    core, byodb = settings.database_url, settings.byodb_url
    if core is None:
        embedded = EmbeddedPostgres(settings.data_dir)
        embedded.start()
        embedded.ensure_database(CORE_DATABASE)
        core = embedded.conninfo(CORE_DATABASE)
        if byodb is None and need_byodb:
            embedded.ensure_database(EMBEDDED_BYODB)
            byodb = embedded.sqlalchemy_url(EMBEDDED_BYODB)
    if byodb is None:
        if need_byodb:
            raise SystemExit("SCHEMASAGA_BYODB_URL must be set when SCHEMASAGA_DATABASE_URL is")
        byodb = ""
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
    databases: DatabaseService
    drift: DriftDetector
    secrets: SecretBox = field(repr=False)


def load_secrets(settings: Settings) -> SecretBox:
    """This process's encryption keys; a missing or wrong key stops the start with what to do."""
    try:
        return resolve_secret_box(settings)
    except SecretsError as exc:
        raise SystemExit(str(exc)) from None


@asynccontextmanager
async def open_container(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Container]:
    secrets = await asyncio.to_thread(load_secrets, settings)
    resolved = await asyncio.to_thread(resolve_databases, settings)
    try:
        if migrate:
            await asyncio.to_thread(upgrade, resolved.core_conninfo)
        else:  # fail at once on an unreachable core database, not after the pool's 30 s
            await (await psycopg.AsyncConnection.connect(resolved.core_conninfo, connect_timeout=5)).close()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            resolved.core_conninfo,
            min_size=2,
            max_size=max(10, settings.worker_concurrency * 2 + 4),
            open=False,
            # Replace connections broken by a core database restart instead of failing a request.
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": 5},
            timeout=settings.core_pool_timeout,
        )
        await pool.open(wait=True, timeout=30)
        jobs = create_app()
        await jobs.open_async(pool)
        catalog: DatabaseCatalog | None = None
        refresher: asyncio.Task[None] | None = None
        try:
            catalog, container = await _build(settings, resolved, secrets, pool, jobs, record_default=migrate)
            if settings.catalog_refresh_interval > 0:
                refresher = asyncio.create_task(_refresh_catalog(catalog, settings.catalog_refresh_interval))
            yield container
        finally:
            if refresher is not None:
                refresher.cancel()
                await asyncio.gather(refresher, return_exceptions=True)
            await jobs.close_async()
            await pool.close()
            if catalog is not None:
                catalog.close()
    finally:
        if resolved.embedded is not None:
            await asyncio.to_thread(resolved.embedded.stop)


async def _build(
    settings: Settings,
    resolved: Resolved,
    secrets: SecretBox,
    pool: AsyncConnectionPool[Any],
    jobs: procrastinate.App,
    *,
    record_default: bool,
) -> tuple[DatabaseCatalog, Container]:
    limits = DdlLimits(
        lock_timeout_ms=settings.ddl_lock_timeout_ms,
        statement_timeout_ms=settings.ddl_statement_timeout_ms,
        connect_timeout_s=settings.byodb_connect_timeout,
    )
    try:
        parse_database_url(resolved.byodb_url, from_api=False)
    except DomainError as exc:  # its message never quotes the URL
        raise SystemExit(f"default database (SCHEMASAGA_BYODB_URL): {exc}") from None
    catalog = DatabaseCatalog(
        limits=limits,
        source=RegistrySource(conninfo=resolved.core_conninfo, pool=pool, secrets=secrets),
    )
    try:
        return catalog, await _services(
            settings, resolved, secrets, pool, jobs, catalog, limits, record_default=record_default
        )
    except BaseException:
        catalog.close()  # the caller never got it: dispose of the engines it opened
        raise


async def _services(
    settings: Settings,
    resolved: Resolved,
    secrets: SecretBox,
    pool: AsyncConnectionPool[Any],
    jobs: procrastinate.App,
    catalog: DatabaseCatalog,
    limits: DdlLimits,
    *,
    record_default: bool,
) -> Container:
    catalog.register(DEFAULT_DATABASE, resolved.byodb_url, pinned=True)
    store = EventStore(pool)
    databases = DatabaseService(
        pool=pool,
        store=store,
        catalog=catalog,
        secrets=secrets,
        limits=limits,
        policy=settings.registration_policy(),
    )
    try:
        # Only the processes that run the service record it: a read-only command (verify, drift...)
        # started with another SCHEMASAGA_BYODB_URL must not change what the running service uses.
        if record_default:
            await databases.ensure_default(resolved.byodb_url)
    except (SecretsError, DomainError) as exc:
        raise SystemExit(f"default database (SCHEMASAGA_BYODB_URL): {exc}") from None
    await catalog.refresh()
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
    return Container(
        settings,
        resolved,
        pool,
        store,
        repository,
        jobs,
        scheduler,
        catalog,
        tables,
        runner,
        databases,
        DriftDetector(pool=pool, repository=repository, catalog=catalog),
        secrets,
    )


async def _refresh_catalog(catalog: DatabaseCatalog, every: float) -> None:
    """Reload the registered databases now and then: another process may have changed them."""
    while True:
        await asyncio.sleep(every)
        try:
            await catalog.refresh()
        except Exception as exc:
            # Never the URLs: the catalog's errors name databases only.
            log.warning("reloading the registered databases failed: %s", type(exc).__name__)


async def run_worker(container: Container, *, concurrency: int, install_signal_handlers: bool) -> None:
    """Run saga jobs until cancelled or signalled; the job in hand is finished first."""
    s = container.settings
    hand = JobsInHand()

    async def also() -> None:
        await keep_heartbeat(container.jobs, hand)
        await release_lost_jobs(container.jobs, hand)
        await requeue_orphans(container)

    watchdog = asyncio.create_task(
        stalled_job_watchdog(
            container.jobs,
            stalled_after=s.stalled_worker_timeout,
            every=max(1.0, s.stalled_worker_timeout / 3),
            also=also,
        )
    )
    background = [watchdog]
    if s.drift_scan_interval > 0:
        background.append(
            asyncio.create_task(
                periodic_scan(container.drift, container.catalog, every=s.drift_scan_interval)
            )
        )
    try:
        await _work_until_stopped(
            container, hand, concurrency=concurrency, install_signal_handlers=install_signal_handlers
        )
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


async def _work_until_stopped(
    container: Container, hand: JobsInHand, *, concurrency: int, install_signal_handlers: bool
) -> None:
    """Run the procrastinate worker; when the core database drops its connections (restart,
    failover), start it again after a capped backoff instead of letting the process exit."""
    delay = 0.5
    while True:
        try:
            await _run_procrastinate(
                container, hand, concurrency=concurrency, install_signal_handlers=install_signal_handlers
            )
            return
        except (procrastinate.exceptions.ConnectorException, psycopg.OperationalError) as exc:
            log.warning("worker lost the core database (%s); restarting in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _run_procrastinate(
    container: Container, hand: JobsInHand, *, concurrency: int, install_signal_handlers: bool
) -> None:
    s = container.settings
    # The worker is built here rather than by ``App.run_worker_async`` so that the lost-job check
    # knows the id it registers under (a new one at each restart).
    worker = procrastinate.worker.Worker(
        app=container.jobs,
        concurrency=concurrency,
        fetch_job_polling_interval=s.job_polling_interval,
        update_heartbeat_interval=s.heartbeat_interval,
        stalled_worker_timeout=s.stalled_worker_timeout,
        additional_context={"saga_runner": container.runner, "jobs_in_hand": hand},
        install_signal_handlers=install_signal_handlers,
        delete_jobs="successful",
    )
    hand.worker_id = lambda: worker.worker_id
    await worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated


async def requeue_orphans(container: Container) -> int:
    """Defer a job for every table whose unfinished operations have no job left (a job that failed
    for good, for instance): without it, nothing would ever finish them."""
    async with container.pool.connection() as conn:
        rows = await (await conn.execute(DRIFT_QUERIES["stuck_operations"])).fetchall()
    heads: dict[Any, Any] = {}
    for operation_id, table_id, *_ in rows:
        heads.setdefault(table_id, operation_id)
    for table_id, operation_id in heads.items():
        log.warning("table %s has unfinished operations but no job; deferring one", table_id)
        async with container.pool.connection() as conn, conn.transaction():
            await container.scheduler.run_saga(conn=conn, table_id=table_id, operation_id=operation_id)
    return len(heads)
