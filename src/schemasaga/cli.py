"""``schemasaga serve | worker | db upgrade | events tail | events show | projections rebuild``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click

from schemasaga.config import Settings

if TYPE_CHECKING:
    from schemasaga.bootstrap import Container
    from schemasaga.drift import DriftReport


def _settings(**overrides: Any) -> Settings:
    settings = Settings()
    values = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_copy(update=values) if values else settings


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of the embedded PostgreSQL (default ./.schemasaga, or SCHEMASAGA_DATA_DIR).",
)


class _OperatorError(click.ClickException):
    exit_code = 2  # 1 is verify's and drift's "divergence found"


class _Cli(click.Group):
    """Errors an operator can fix (settings, an unreachable core database, a data dir that cannot be
    used) end the command with one line and exit status 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        import psycopg
        import pydantic
        from psycopg_pool import PoolTimeout

        from schemasaga.embedded import EmbeddedPostgresError

        try:
            return super().invoke(ctx)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"SCHEMASAGA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise _OperatorError(f"invalid settings: {problems}") from None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # Never the URL: libpq's message names the host and port, not the password.
            raise _OperatorError(f"the core database cannot be reached: {exc}") from None
        except psycopg.errors.UndefinedTable:
            raise _OperatorError(
                "the core database has no schemasaga schema yet: run `schemasaga db upgrade` (or start "
                "`schemasaga serve` once)"
            ) from None
        except (EmbeddedPostgresError, OSError) as exc:
            raise _OperatorError(str(exc)) from None


@click.group(cls=_Cli)
@click.version_option(package_name="schemasaga")
def main() -> None:
    """Event-sourced table management for databases you own."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on (default 8000).")
@data_dir_option
@click.option("--worker/--no-worker", default=True, help="Run a worker in the same process (default on).")
def serve(host: str | None, port: int | None, data_dir: Path | None, worker: bool) -> None:
    """Run the HTTP API (and, by default, an in-process worker)."""
    settings = _settings(host=host, port=port, data_dir=data_dir)
    _logging(settings)
    asyncio.run(_serve(settings, with_worker=worker))


async def _serve(settings: Settings, *, with_worker: bool) -> None:
    import uvicorn

    from schemasaga.api.app import create_app
    from schemasaga.bootstrap import open_container, run_worker

    _Server = _server_class()
    async with open_container(settings) as container:
        config = uvicorn.Config(
            create_app(container),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            lifespan="off",
        )
        server = _Server(config)
        worker_task = (
            asyncio.create_task(
                run_worker(container, concurrency=settings.worker_concurrency, install_signal_handlers=False)
            )
            if with_worker
            else None
        )
        try:
            # uvicorn handles SIGINT/SIGTERM and returns once in-flight requests are done.
            await server.serve()
        finally:
            if worker_task is not None:
                worker_task.cancel()  # procrastinate finishes the job in hand, then stops
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises the SIGTERM/SIGINT it caught once it has stopped, which would kill the
        process before the worker, the pools and the embedded PostgreSQL are stopped: keep the
        graceful stop, drop the re-raise."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server


@main.command()
@data_dir_option
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Jobs run at once (default 8).")
def worker(data_dir: Path | None, concurrency: int | None) -> None:
    """Run saga jobs only. Any number of workers may share one core database."""
    settings = _settings(data_dir=data_dir, worker_concurrency=concurrency)
    _logging(settings)

    from schemasaga.bootstrap import open_container, run_worker

    async def _run() -> None:
        async with open_container(settings) as container:
            await run_worker(container, concurrency=settings.worker_concurrency, install_signal_handlers=True)

    asyncio.run(_run())


@main.group()
def db() -> None:
    """Core database maintenance."""


@db.command()
@data_dir_option
def upgrade(data_dir: Path | None) -> None:
    """Apply the core schema and migrations (and procrastinate's schema)."""
    settings = _settings(data_dir=data_dir)
    _logging(settings)
    from schemasaga.bootstrap import resolve_databases
    from schemasaga.migrations import upgrade as do_upgrade

    resolved = resolve_databases(settings, need_byodb=False)
    try:
        applied = do_upgrade(resolved.core_conninfo)
        click.echo("applied: " + ", ".join(applied) if applied else "core database is up to date")
    finally:
        if resolved.embedded is not None:
            resolved.embedded.stop()


@main.group()
def events() -> None:
    """Read the event store."""


def _event_json(e: Any) -> dict[str, Any]:
    return {
        "position": e.position,
        "event_id": str(e.event_id),
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "stream": e.stream,
        "version": e.version,
        "created_at": e.created_at.isoformat(),
        "valid_at": e.valid_at.isoformat() if e.valid_at else None,
        "data": e.data,
        "metadata": e.metadata,
    }


@events.command()
@data_dir_option
@click.option("--from-start", is_flag=True, help="Print the whole log first (default: only new events).")
def tail(data_dir: Path | None, from_start: bool) -> None:
    """Follow the global log and print events as they are committed, until Ctrl-C."""
    settings = _settings(data_dir=data_dir)
    _logging(settings)

    async def _run() -> None:
        from schemasaga.bootstrap import open_container
        from schemasaga.eventstore import Checkpoint

        async with open_container(settings, migrate=False) as c:
            after = None if from_start else await c.store.current_checkpoint()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)

            async def follow() -> None:
                checkpoint: Checkpoint | None = after
                async for event in c.store.follow(after=checkpoint):
                    click.echo(json.dumps(_event_json(event), default=str), nl=True)

            task = asyncio.create_task(follow())
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(_run())


@events.command()
@click.argument("event_id", type=click.UUID)
@data_dir_option
def show(event_id: UUID, data_dir: Path | None) -> None:
    """Print one event (with the streams it belongs to) as JSON."""
    settings = _settings(data_dir=data_dir)
    _logging(settings)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container
        from schemasaga.eventstore import EventNotFound

        async with open_container(settings, migrate=False) as c:
            try:
                event = await c.store.get(event_id)
            except EventNotFound:
                click.echo(f"no event with id {event_id}", err=True)
                return 1
            out = _event_json(event)
            out["streams"] = await c.store.streams_of(event_id)
            click.echo(json.dumps(out, indent=2, default=str))
            return 0

    sys.exit(asyncio.run(_run()))


@main.group()
def projections() -> None:
    """Read models."""


@projections.command()
@data_dir_option
def rebuild(data_dir: Path | None) -> None:
    """Rebuild the read models from the events."""
    settings = _settings(data_dir=data_dir)
    _logging(settings)

    async def _run() -> None:
        from schemasaga.bootstrap import open_container
        from schemasaga.projections import rebuild_all

        async with open_container(settings) as c, c.pool.connection() as conn, conn.transaction():
            counts = await rebuild_all(conn, c.store)
            click.echo(
                f"rebuilt read models of {counts['tables']} tables and {counts['databases']} databases"
            )

    asyncio.run(_run())


@main.command()
@data_dir_option
@click.option("--database", default=None, help="Only this database (default: every registered one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drift(data_dir: Path | None, database: str | None, as_json: bool) -> None:
    """Compare each table's confirmed metadata with the live schema; exit 1 if anything drifted."""
    settings = _settings(data_dir=data_dir)
    _logging(settings)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container

        async with open_container(settings, migrate=False) as c:
            names = [database] if database else c.catalog.names()
            reports, failed = await _scan_all(c, names)
        if as_json:
            out = [r.to_dict() for r in reports]
            out += [{"database": name, "error": error} for name, error in failed.items()]
            click.echo(json.dumps(out, indent=2))
        else:
            for r in reports:
                click.echo(f"database {r.database}: {r.checked} checked, {len(r.drifted)} drifted")
                for t in r.drifted:
                    for issue in t.issues:
                        click.echo(f"  {t.name} ({t.table_id}): {_issue_text(issue)}")
                if r.unmanaged_tables:
                    click.echo(f"  not managed by schemasaga: {', '.join(r.unmanaged_tables)}")
            for name, error in failed.items():
                click.echo(f"database {name}: NOT CHECKED: {error}")
        return 0 if all(r.clean for r in reports) and not failed else 1

    sys.exit(asyncio.run(_run()))


async def _scan_all(container: Container, names: list[str]) -> tuple[list[DriftReport], dict[str, str]]:
    """Drift reports of the databases that could be read, and why the others could not."""
    from schemasaga.domain.errors import DomainError

    reports: list[DriftReport] = []
    failed: dict[str, str] = {}
    for name in names:
        try:
            reports.append(await container.drift.scan(name))
        except DomainError as exc:  # unknown, unreachable, or its credentials cannot be decrypted
            failed[name] = exc.message
    return reports, failed


def _issue_text(issue: dict[str, Any]) -> str:
    parts = [issue["issue"].replace("_", " ")]
    if "column" in issue:
        parts.append(f"{issue['column']!r}")
    if "expected" in issue:
        parts.append(f"expected {issue['expected']}, found {issue['actual']}")
    if "detail" in issue:
        parts.append(f"({issue['detail']})")
    return " ".join(parts)


@main.command()
@data_dir_option
@click.option(
    "--wait", type=float, default=0.0, help="Seconds to wait for changes in flight to finish first."
)
def verify(data_dir: Path | None, wait: float) -> None:
    """Check every table's consistency and every operation's progress; exit 1 on any divergence."""
    settings = _settings(data_dir=data_dir)
    _logging(settings)

    async def _run() -> int:
        from psycopg.rows import dict_row

        from schemasaga.bootstrap import open_container
        from schemasaga.drift import Q as DRIFT_Q

        async with open_container(settings, migrate=False) as c:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while True:
                async with c.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                    await cur.execute(DRIFT_Q["unsettled_operations"])
                    unsettled = await cur.fetchall()
                    await cur.execute(DRIFT_Q["stuck_operations"])
                    stuck = await cur.fetchall()
                if not unsettled or loop.time() >= deadline:
                    break
                await asyncio.sleep(0.2)
            reports, failed = await _scan_all(c, c.catalog.names())
        failures = len(failed)
        for name, error in failed.items():
            click.echo(f"database {name}: NOT CHECKED: {error}")
        for r in reports:
            verdict = "all consistent" if r.clean else f"{len(r.drifted)} DIVERGE"
            click.echo(f"database {r.database}: {r.checked} tables checked, {verdict}")
            for t in r.drifted:
                failures += 1
                for issue in t.issues:
                    click.echo(f"  {t.name} ({t.table_id}): {_issue_text(issue)}")
        click.echo(f"operations in flight: {len(unsettled)}; stuck (no job will finish them): {len(stuck)}")
        for op in stuck:
            failures += 1
            click.echo(
                f"  STUCK {op['kind']} {op['operation_id']} on table {op['table_id']} ({op['status']})"
            )
        click.echo("OK" if failures == 0 else f"FAILED: {failures} divergence(s)")
        return 0 if failures == 0 else 1

    sys.exit(asyncio.run(_run()))


@main.group()
def secrets() -> None:
    """Encryption keys of the stored BYODB credentials (SCHEMASAGA_SECRET_KEY)."""


@secrets.command("generate-key")
def generate_key() -> None:
    """Print a new random key, for SCHEMASAGA_SECRET_KEY."""
    from schemasaga.secrets import generate_key as new_key

    click.echo(new_key())


@secrets.command()
@data_dir_option
@click.option("--new-key", default=None, help="The key to encrypt with from now on (default: a new one).")
def rotate(data_dir: Path | None, new_key: str | None) -> None:
    """Re-encrypt every stored database URL with a new key.

    \b
    Quick way (a short window where processes restarted late cannot load new databases):
      1. SCHEMASAGA_SECRET_KEY=OLD schemasaga secrets rotate --new-key NEW   (or without --new-key:
         a key is generated and printed)
      2. restart every process (API replicas, workers) with SCHEMASAGA_SECRET_KEY=NEW.
    Without downtime:
      1. give every process SCHEMASAGA_SECRET_KEY=NEW,OLD (the first key encrypts, both decrypt);
      2. SCHEMASAGA_SECRET_KEY=NEW,OLD schemasaga secrets rotate --new-key NEW
      3. give every process SCHEMASAGA_SECRET_KEY=NEW; destroy OLD.
    On the embedded default with no key set, the key file <data dir>/secret.key is updated (it holds both
    keys while the rotation runs); stop the processes using the data dir first (it refuses otherwise).
    Each database gets a DatabaseCredentialsRotated event; the events
    recorded before keep the old ciphertexts, readable only with the old key. Running it again is safe:
    URLs already under the new key are left alone.
    """
    settings = _settings(data_dir=data_dir)
    _logging(settings)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container
        from schemasaga.secrets import (
            SecretsError,
            key_file_path,
            parse_keys,
            uses_key_file,
            write_key_file,
        )
        from schemasaga.secrets import generate_key as make_key

        generated = new_key is None
        try:
            key = make_key() if new_key is None else parse_keys(new_key)[0]
        except SecretsError as exc:
            click.echo(f"--new-key: {exc}", err=True)
            return 2
        async with open_container(settings) as c:
            new = c.secrets.with_primary(key)
            key_file = key_file_path(settings) if uses_key_file(settings) else None
            embedded = c.resolved.embedded
            others = await asyncio.to_thread(embedded.other_users) if embedded and key_file else []
            if others:
                # They hold the old key in memory: a database they register after the rotation would
                # be encrypted with it, and lost once the key file holds only the new key.
                click.echo(
                    f"processes {others} use {settings.data_dir} with the key file's current key: "
                    "stop them (serve, worker) first, then rotate and start them again",
                    err=True,
                )
                return 2
                # Both keys on disk first: a crash during the rotation leaves every URL decryptable.
                write_key_file(key_file, new.keys)
            try:
                names = await c.databases.rotate(new, metadata={"actor": "cli:secrets rotate"})
            except SecretsError as exc:
                click.echo(str(exc), err=True)
                return 1
            if key_file is not None:
                write_key_file(key_file, [key])
        click.echo(f"re-encrypted {len(names)} database URL(s) with key {new.key_id}: {', '.join(names)}")
        if key_file is not None:
            click.echo(f"the key file {key_file} now holds only the new key")
        else:
            if generated:
                click.echo(f"new key (keep it secret): {key}")
            click.echo("now give every process SCHEMASAGA_SECRET_KEY=<the new key> and restart it")
        return 0

    sys.exit(asyncio.run(_run()))


if __name__ == "__main__":  # last: every command must be defined first
    main()
