"""The composition root: builds the pool, the stores, the services, the job queue and the web app, and
nothing else (the worker's loop is in ``worker.py``, the commands' logic in ``services``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import procrastinate
import psycopg
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp

from schemasaga.api.access import AccessPolicy
from schemasaga.api.app import create_app
from schemasaga.api.deps import Services
from schemasaga.api.v1.events import render_event
from schemasaga.api.worker_endpoint import WorkerProbes, create_worker_endpoint
from schemasaga.byodb.adapter import DdlLimits, Prober
from schemasaga.byodb.connections import Connections
from schemasaga.byodb.urls import parse_database_url
from schemasaga.byodb.verify import CoreIdentity
from schemasaga.config import ConfigurationError, Settings
from schemasaga.coredb.embedded import EmbeddedPostgres
from schemasaga.coredb.feed import PgFeed
from schemasaga.coredb.idempotency import PgIdempotency
from schemasaga.coredb.migrations import missing_migrations, upgrade
from schemasaga.coredb.notices import OperationNotices
from schemasaga.coredb.own import PgOwnDatabase
from schemasaga.coredb.pool import check_connection
from schemasaga.coredb.tokens import PgTokens
from schemasaga.coredb.transaction import PgCore
from schemasaga.coredb.views import PgReadModels, RegistrySource
from schemasaga.coredb.webhooks import PgWebhooks
from schemasaga.domain import access
from schemasaga.domain.database import DEFAULT_DATABASE
from schemasaga.domain.errors import DomainError
from schemasaga.domain.policy import RegistrationPolicy, parse_socket_dirs
from schemasaga.domain.webhooks import TargetPolicy, retry_delays
from schemasaga.eventstore import EventStore
from schemasaga.jobs.app import JobScheduler
from schemasaga.jobs.app import create_app as create_jobs_app
from schemasaga.jobs.handoff import LocalHandoff
from schemasaga.jobs.queries import QueueStats, queue_stats
from schemasaga.jobs.webhooks import HttpSender
from schemasaga.observability import metrics
from schemasaga.observability.health import Check
from schemasaga.secrets import SecretBox, SecretsError, resolve_secret_box
from schemasaga.services.databases import DatabaseCommands
from schemasaga.services.drift import DriftDetector
from schemasaga.services.sagas.runner import RetryPolicy, SagaRunner
from schemasaga.services.tables import TableCommands
from schemasaga.services.tokens import TokenCommands
from schemasaga.services.trash import TrashCommands
from schemasaga.services.unit_of_work import UnitOfWork
from schemasaga.services.webhooks import WebhookCommands, WebhookDeliverer, WebhookDispatcher
from schemasaga.worker import WorkerLiveness, WorkerParts

log = logging.getLogger(__name__)

CORE_DATABASE = "schemasaga"
EMBEDDED_BYODB = "byodb"

# /readyz and /metrics wait this long for the core database, at most: a probe must answer.
_PROBE_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where the databases are, once the embedded server (if any) is up."""

    core_conninfo: str
    byodb_url: str = field(repr=False)  # may hold a password
    embedded: EmbeddedPostgres | None


def check_settings(settings: Settings) -> RegistrationPolicy:
    """The registration policy the settings describe; a malformed one stops the start."""
    try:
        parse_socket_dirs(settings.byodb_allowed_socket_dirs)
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS: {exc}") from None
    try:
        return RegistrationPolicy.build(
            allowed_hosts=settings.byodb_allowed_hosts,
            sqlite_dir=settings.registered_sqlite_dir,
            allowed_socket_dirs=settings.byodb_allowed_socket_dirs,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: SCHEMASAGA_BYODB_ALLOWED_HOSTS: {exc}") from None


def access_policy(settings: Settings, *, host: str | None = None) -> AccessPolicy:
    """Tokens, Host allow-list and CORS, from the settings and the address the service listens on
    (``host``: another one than the API's, the worker's metrics endpoint's)."""
    origins = tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip())
    host = settings.host if host is None else host
    return AccessPolicy(
        tokens_required=access.tokens_required(settings.auth, host),
        allowed_hosts=access.allowed_hosts(settings.allowed_hosts, host),
        cors_origins=origins,
    )


def describe_access(settings: Settings) -> list[str]:
    """What ``serve`` says at start about who may reach it."""
    policy = access_policy(settings)
    listening = f"listening on {settings.host}"
    if policy.tokens_required:
        why = (
            "SCHEMASAGA_AUTH=required"
            if settings.auth == "required"
            else f"SCHEMASAGA_AUTH=auto, {listening}"
        )
        lines = [
            f"access: tokens required ({why}); /healthz and /readyz stay open, /metrics takes a read "
            "token limited to no database"
        ]
    else:
        why = (
            "SCHEMASAGA_AUTH=off"
            if settings.auth == "off"
            else f"SCHEMASAGA_AUTH=auto, {listening} (loopback)"
        )
        lines = [f"access: no token required ({why}); every request may do everything"]
    if policy.allowed_hosts is None:
        lines.append("access: any Host header is answered (SCHEMASAGA_ALLOWED_HOSTS is unset or *)")
    else:
        lines.append(f"access: Host headers answered: {', '.join(sorted(policy.allowed_hosts))}")
    if policy.cors_origins:
        lines.append(f"access: CORS allowed for {', '.join(policy.cors_origins)}")
    return lines


def _make_sqlite_dir(settings: Settings) -> None:
    """The folder where SQLite files may be registered exists from the start: SQLite creates a file, never
    the folder it is in."""
    try:
        settings.registered_sqlite_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"SCHEMASAGA_SQLITE_DIR {settings.registered_sqlite_dir}: {exc}") from None


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
            raise ConfigurationError("SCHEMASAGA_BYODB_URL must be set when SCHEMASAGA_DATABASE_URL is")
        byodb = ""
    return Resolved(core_conninfo=_libpq(core), byodb_url=byodb, embedded=embedded)


def _libpq(url: str) -> str:
    # Accept SQLAlchemy-style URLs for the core database too.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def load_secrets(settings: Settings) -> SecretBox:
    """This process's encryption keys; a missing or wrong key stops the start with what to do."""
    try:
        return resolve_secret_box(settings)
    except SecretsError as exc:
        raise ConfigurationError(str(exc)) from None


@dataclass
class Container:
    settings: Settings
    resolved: Resolved
    pool: AsyncConnectionPool[Any]
    store: EventStore
    jobs: procrastinate.App
    scheduler: JobScheduler
    connections: Connections
    uow: UnitOfWork
    reads: PgReadModels
    tables: TableCommands
    trash: TrashCommands
    databases: DatabaseCommands
    runner: SagaRunner
    drift: DriftDetector
    tokens: TokenCommands
    waits: OperationNotices
    feed: PgFeed
    webhooks: WebhookCommands
    webhook_store: PgWebhooks
    secrets: SecretBox = field(repr=False)
    # The in-process worker's (run_worker with self.worker), for /readyz.
    liveness: WorkerLiveness = field(default_factory=WorkerLiveness)
    # The saga jobs this process defers, handed to its worker when it runs one (jobs/handoff.py).
    handoff: LocalHandoff | None = None

    @property
    def worker(self) -> WorkerParts:
        return WorkerParts(
            settings=self.settings,
            jobs=self.jobs,
            runner=self.runner,
            uow=self.uow,
            reads=self.reads,
            drift=self.drift,
            trash=self.trash,
            webhook_deliverer=WebhookDeliverer(
                store=self.webhook_store,
                sender=HttpSender(policy=self.webhooks.policy, timeout=self.settings.webhook_timeout),
                commands=self.webhooks,
                render=render_event,
                delays=retry_delays(
                    base=self.settings.webhook_retry_base_delay,
                    cap=self.settings.webhook_retry_max_delay,
                    total=self.settings.webhook_retry_for,
                ),
            ),
            webhook_dispatcher=WebhookDispatcher(feed=self.feed, store=self.webhook_store),
            liveness=self.liveness,
            handoff=self.handoff,
        )

    def web_app(self, *, with_worker: bool = False) -> FastAPI:
        """The HTTP app; ``with_worker``: this process runs a worker too, which /readyz then checks."""

        async def readiness() -> list[Check]:
            return await self.readiness(with_worker=with_worker)

        return create_app(
            Services(
                tables=self.tables,
                trash=self.trash,
                databases=self.databases,
                drift=self.drift,
                reads=self.reads,
                connections=self.connections,
                ping_core=self.ping_core,
                readiness=readiness,
                scrape=self.scrape,
                tokens=self.tokens,
                idempotency=PgIdempotency(self.pool),
                waits=self.waits,
                feed=self.feed,
                webhooks=self.webhooks,
            ),
            access=access_policy(self.settings),
        )

    async def readiness(self, *, with_worker: bool) -> list[Check]:
        """The checks of ``/readyz``; ``with_worker``: this process runs a worker, whose heartbeat counts."""
        checks = await self._core_checks()
        if with_worker:
            checks.append(self._worker_check())
        return checks

    async def ping_core(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    def worker_endpoint(self, *, host: str) -> tuple[ASGIApp, bool]:
        """The app of ``worker --metrics-listen`` on ``host``, and whether its ``/metrics`` takes a token
        (as the API's would, listening there)."""
        policy = access_policy(self.settings, host=host)

        async def readiness() -> list[Check]:
            return await self.readiness(with_worker=True)

        probes = WorkerProbes(
            scrape=self.scrape, readiness=readiness, ping_core=self.ping_core, tokens=self.tokens
        )
        app = create_worker_endpoint(
            probes, tokens_required=policy.tokens_required, allowed_hosts=policy.allowed_hosts
        )
        return app, policy.tokens_required

    async def _core_checks(self) -> list[Check]:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT), self.pool.connection() as conn:
                missing = await missing_migrations(conn)
        except psycopg.errors.UndefinedTable:
            return [Check("core_database", True), Check("schema", False, "no schemasaga schema")]
        except Exception as exc:  # unreachable, restarting, too slow: not ready, whatever the cause
            detail = str(exc) or type(exc).__name__
            return [Check("core_database", False, detail), Check("schema", False, "not checked")]
        if missing:
            return [Check("core_database", True), Check("schema", False, f"missing: {', '.join(missing)}")]
        return [Check("core_database", True), Check("schema", True)]

    def _worker_check(self) -> Check:
        age = self.liveness.age()
        limit = self.settings.stalled_worker_timeout
        if age is None:
            return Check("worker", False, "the worker is not running")
        if age > limit:
            return Check("worker", False, f"no heartbeat for {age:.1f}s (limit {limit:g}s)")
        return Check("worker", True)

    async def scrape(self) -> bytes:
        """The text of ``/metrics``."""
        stats: QueueStats | None = None
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT), self.pool.connection() as conn:
                stats = await queue_stats(conn)
        except Exception as exc:  # the rest of the metrics are still worth answering
            log.warning("metrics: the job queue could not be read: %s", exc)
        return metrics.exposition(stats)


@contextmanager
def shared_start(settings: Settings) -> Iterator[Resolved]:
    """What the API processes of ``serve --workers N`` share, done once before any of them starts: the
    settings checked (a bad one stops the start, not N processes one by one), the embedded default's key
    file written, the SQLite folder made, the embedded server started and held (so it outlives every
    restart of a process, and stops only after the last one) and the migrations applied."""
    check_settings(settings)
    load_secrets(settings)
    if (problem := metrics.check_multiprocess_dir()) is not None:
        raise ConfigurationError(problem)
    _make_sqlite_dir(settings)
    resolved = resolve_databases(settings)
    try:
        try:
            parse_database_url(resolved.byodb_url, from_api=False)
        except DomainError as exc:  # its message never quotes the URL
            raise ConfigurationError(f"default database (SCHEMASAGA_BYODB_URL): {exc}") from None
        upgrade(resolved.core_conninfo)
        yield resolved
    finally:
        if resolved.embedded is not None:
            resolved.embedded.stop()


@asynccontextmanager
async def open_container(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Container]:
    policy = check_settings(settings)
    secrets = await asyncio.to_thread(load_secrets, settings)
    if migrate:  # the processes that run the service
        if (problem := metrics.check_multiprocess_dir()) is not None:
            raise ConfigurationError(problem)
        _make_sqlite_dir(settings)
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
            check=check_connection,
            kwargs={"connect_timeout": 5},
            timeout=settings.core_pool_timeout,
        )
        await pool.open(wait=True, timeout=30)
        jobs = create_jobs_app()
        await jobs.open_async(pool)
        connections: Connections | None = None
        refresher: asyncio.Task[None] | None = None
        container: Container | None = None
        try:
            connections = _connections(settings, resolved, secrets, pool)
            container = await _build(
                settings, resolved, secrets, policy, pool, jobs, connections, record_default=migrate
            )
            if settings.catalog_refresh_interval > 0:
                refresher = asyncio.create_task(connections.keep_fresh(settings.catalog_refresh_interval))
            yield container
        finally:
            if container is not None:
                await container.waits.close()
                await container.feed.close()
                if container.handoff is not None:
                    await container.handoff.close()
            if refresher is not None:
                refresher.cancel()
                await asyncio.gather(refresher, return_exceptions=True)
            await jobs.close_async()
            await pool.close()
            if connections is not None:
                connections.close()
    finally:
        if resolved.embedded is not None:
            await asyncio.to_thread(resolved.embedded.stop)


def _limits(settings: Settings) -> DdlLimits:
    return DdlLimits(
        lock_timeout_ms=settings.ddl_lock_timeout_ms,
        statement_timeout_ms=settings.ddl_statement_timeout_ms,
        online_statement_timeout_ms=settings.ddl_online_statement_timeout_ms,
        connect_timeout_s=settings.byodb_connect_timeout,
        threads=settings.byodb_threads_per_database,
    )


def _connections(
    settings: Settings, resolved: Resolved, secrets: SecretBox, pool: AsyncConnectionPool[Any]
) -> Connections:
    try:
        parse_database_url(resolved.byodb_url, from_api=False)
    except DomainError as exc:  # its message never quotes the URL
        raise ConfigurationError(f"default database (SCHEMASAGA_BYODB_URL): {exc}") from None
    connections = Connections(
        limits=_limits(settings),
        source=RegistrySource(conninfo=resolved.core_conninfo, pool=pool, secrets=secrets),
        # Read at the first refresh (in _build, before any registered database is used), then again at
        # each refresh while it holds no cluster identifier (see CoreIdentity.refresh).
        core=CoreIdentity(
            whole_server=resolved.embedded is not None,
            read=PgOwnDatabase(pool, whole_server=resolved.embedded is not None).identity,
        ),
    )
    connections.register(DEFAULT_DATABASE, resolved.byodb_url, pinned=True)
    return connections


async def _build(
    settings: Settings,
    resolved: Resolved,
    secrets: SecretBox,
    policy: RegistrationPolicy,
    pool: AsyncConnectionPool[Any],
    jobs: procrastinate.App,
    connections: Connections,
    *,
    record_default: bool,
) -> Container:
    store = EventStore(pool)
    scheduler = JobScheduler(jobs)
    handoff = LocalHandoff(pool)
    reads = PgReadModels(pool, store=store)
    waits = OperationNotices(resolved.core_conninfo, reads)
    core = PgCore(
        pool,
        store=store,
        scheduler=scheduler,
        observer=metrics.CommitMetrics(connections.known_engine),
        handoff=handoff,
        finished=waits.committed,
    )
    uow = UnitOfWork(core, snapshot_every=settings.snapshot_every)
    databases = DatabaseCommands(
        uow=uow,
        reads=reads,
        connections=connections,
        probe=Prober(_limits(settings)),
        secrets=secrets,
        policy=policy,
        # The embedded server is the service's own: none of its databases may be registered.
        own=PgOwnDatabase(pool, whole_server=resolved.embedded is not None),
    )
    try:
        # Only the processes that run the service record it: a read-only command (verify, drift...)
        # started with another SCHEMASAGA_BYODB_URL must not change what the running service uses.
        if record_default:
            await databases.ensure_default(resolved.byodb_url)
    except (SecretsError, DomainError) as exc:
        raise ConfigurationError(f"default database (SCHEMASAGA_BYODB_URL): {exc}") from None
    await connections.refresh()
    feed = PgFeed(pool, resolved.core_conninfo)
    webhook_store = PgWebhooks(pool, store=store, feed=feed, scheduler=scheduler)
    try:
        webhook_policy = TargetPolicy.build(settings.webhook_allowed_hosts)
    except ValueError as exc:
        raise ConfigurationError(f"SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS: {exc}") from None
    retry = RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
    )
    return Container(
        settings=settings,
        resolved=resolved,
        pool=pool,
        store=store,
        jobs=jobs,
        scheduler=scheduler,
        connections=connections,
        uow=uow,
        reads=reads,
        tables=TableCommands(uow=uow, connections=connections, trash_retention_s=settings.trash_retention),
        trash=TrashCommands(uow=uow, connections=connections, reads=reads),
        databases=databases,
        runner=SagaRunner(uow=uow, connections=connections, retry=retry, metrics=metrics.SAGAS),
        drift=DriftDetector(uow=uow, reads=reads, connections=connections, on_scan=metrics.drift_scanned),
        tokens=TokenCommands(store=PgTokens(pool, store=store)),
        waits=waits,
        feed=feed,
        webhooks=WebhookCommands(store=webhook_store, secrets=secrets, policy=webhook_policy),
        webhook_store=webhook_store,
        secrets=secrets,
        handoff=handoff,
    )
