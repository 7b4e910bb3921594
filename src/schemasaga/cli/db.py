"""``schemasaga db upgrade`` and ``schemasaga projections rebuild``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings


@click.group()
def db() -> None:
    """Core database maintenance."""


@db.command()
@data_dir_option
def upgrade(data_dir: Path | None) -> None:
    """Apply the core schema and migrations, and procrastinate's schema and migrations."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)
    from schemasaga.bootstrap import resolve_databases
    from schemasaga.coredb.migrations import upgrade as do_upgrade

    resolved = resolve_databases(s, need_byodb=False)
    try:
        applied = do_upgrade(resolved.core_conninfo)
        click.echo("applied: " + ", ".join(applied) if applied else "core database is up to date")
    finally:
        if resolved.embedded is not None:
            resolved.embedded.stop()


@click.group()
def projections() -> None:
    """Read models."""


@projections.command()
@data_dir_option
def rebuild(data_dir: Path | None) -> None:
    """Rebuild the read models from the events."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> None:
        from schemasaga.bootstrap import open_container
        from schemasaga.coredb import readmodels

        async with open_container(s) as c, c.pool.connection() as conn, conn.transaction():
            counts = await readmodels.rebuild(conn, c.store)
            click.echo(
                f"rebuilt read models of {counts['tables']} tables and {counts['databases']} databases"
            )

    asyncio.run(_run())
