"""``schemasaga tokens create | list | revoke``: API tokens, on the core database only (no BYODB, no
secret key needed). The schema is brought up to date first, so that the first admin token can be made
before the service ever started."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings
from schemasaga.config import Settings

if TYPE_CHECKING:
    from schemasaga.services.tokens import TokenCommands


@click.group()
def tokens() -> None:
    """API tokens (Authorization: Bearer <token>)."""


@contextlib.asynccontextmanager
async def _commands(s: Settings) -> AsyncIterator[TokenCommands]:
    from psycopg_pool import AsyncConnectionPool

    from schemasaga.bootstrap import resolve_databases
    from schemasaga.coredb.migrations import upgrade
    from schemasaga.coredb.tokens import PgTokens
    from schemasaga.eventstore import EventStore
    from schemasaga.services.tokens import TokenCommands

    resolved = await asyncio.to_thread(resolve_databases, s, need_byodb=False)
    try:
        await asyncio.to_thread(upgrade, resolved.core_conninfo)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            resolved.core_conninfo, min_size=1, max_size=2, open=False, kwargs={"connect_timeout": 5}
        )
        await pool.open(wait=True, timeout=30)
        try:
            yield TokenCommands(store=PgTokens(pool, store=EventStore(pool)))
        finally:
            await pool.close()
    finally:
        if resolved.embedded is not None:
            await asyncio.to_thread(resolved.embedded.stop)


def _run(s: Settings, work: Callable[[TokenCommands], Awaitable[None]]) -> None:
    from schemasaga.domain.errors import DomainError

    async def main() -> None:
        async with _commands(s) as commands:
            await work(commands)

    try:
        asyncio.run(main())
    except DomainError as exc:
        raise click.ClickException(exc.message) from None


@tokens.command()
@click.option("--name", required=True, help="The token's name: the actor of what it does.")
@click.option("--scope", required=True, type=click.Choice(["read", "write", "admin"]), help="What it may do.")
@click.option(
    "--database",
    "databases",
    multiple=True,
    help="A database it is limited to (repeat for several; none: every database).",
)
@data_dir_option
def create(name: str, scope: str, databases: tuple[str, ...], data_dir: Path | None) -> None:
    """Create a token and print it, once: it is stored hashed and cannot be shown again."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def work(commands: TokenCommands) -> None:
        created = await commands.create(
            name=name, scope=scope, databases=list(databases) or None, metadata={"actor": "cli:tokens create"}
        )
        where = ", ".join(created.view.databases) if created.view.databases else "every database"
        click.echo(f"created token {name!r}: scope {scope}, {where}")
        click.echo("it is shown this once only; keep it secret:")
        click.echo(created.token)

    _run(s, work)


@tokens.command("list")
@data_dir_option
def list_tokens(data_dir: Path | None) -> None:
    """List the tokens (never their secrets), revoked ones included."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def work(commands: TokenCommands) -> None:
        views = await commands.list_tokens()
        if not views:
            click.echo("no tokens")
            return
        click.echo(f"{'NAME':<24} {'SCOPE':<6} {'DATABASES':<24} {'CREATED':<20} REVOKED")
        for v in views:
            databases = ",".join(v.databases) if v.databases else "*"
            revoked = v.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if v.revoked_at else "-"
            created = v.created_at.strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{v.name:<24} {v.scope.value:<6} {databases:<24} {created:<20} {revoked}")

    _run(s, work)


@tokens.command()
@click.argument("name")
@data_dir_option
def revoke(name: str, data_dir: Path | None) -> None:
    """Revoke a token: from now on it is answered 401."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def work(commands: TokenCommands) -> None:
        await commands.revoke(name=name, metadata={"actor": "cli:tokens revoke"})
        click.echo(f"revoked token {name!r}")

    _run(s, work)
