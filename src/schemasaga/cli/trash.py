"""``schemasaga trash list | restore | purge``: the trash from the command line, through the same
commands as ``/v1/trash`` (a restore or purge is an operation that a worker runs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings

if TYPE_CHECKING:
    from schemasaga.bootstrap import Container

ACTOR = {"actor": "cli"}


@click.group()
def trash() -> None:
    """Deleted tables and removed columns, restorable until their retention ends."""


def _run(data_dir: Path | None, work: Callable[[Container], Awaitable[None]]) -> None:
    from schemasaga.domain.errors import DomainError

    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def main() -> None:
        from schemasaga.bootstrap import open_container

        async with open_container(s, migrate=False) as c:
            await work(c)

    try:
        asyncio.run(main())
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


@trash.command("list")
@data_dir_option
@click.option("--database", default=None, help="Only this database (default: every one).")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_trash(data_dir: Path | None, database: str | None, as_json: bool) -> None:
    """What is in the trash, newest first."""

    async def work(c: Container) -> None:
        items = await c.trash.with_rows(await c.reads.list_trash(database=database, databases=None))
        rows: list[dict[str, Any]] = [
            {
                "trash_id": str(i.view.trash_id),
                "kind": i.view.kind,
                "database": i.view.database,
                "table": i.view.table,
                "column": i.view.column,
                "rows": i.rows,
                "status": i.view.status,
                "trashed_at": i.view.trashed_at.isoformat(),
                "purge_at": i.view.purge_at.isoformat(),
            }
            for i in items
        ]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            what = r["table"] if r["column"] is None else f"{r['table']}.{r['column']}"
            click.echo(
                f"{r['trash_id']}  {r['kind']:6}  {r['database']}  {what}  rows={r['rows']}  "
                f"{r['status']}  purge at {r['purge_at']}"
            )

    _run(data_dir, work)


@trash.command()
@click.argument("trash_id", type=click.UUID)
@click.option("--name", default=None, help="Restore under this name (default: its own).")
@data_dir_option
def restore(trash_id: UUID, name: str | None, data_dir: Path | None) -> None:
    """Bring a table or column back with its rows; prints the operation's id."""

    async def work(c: Container) -> None:
        accepted = await c.trash.restore(trash_id=trash_id, metadata=ACTOR, name=name)
        click.echo(str(accepted.operation_id))

    _run(data_dir, work)


@trash.command()
@click.argument("trash_id", type=click.UUID)
@data_dir_option
def purge(trash_id: UUID, data_dir: Path | None) -> None:
    """Drop a trash entry's data now; prints the operation's id."""

    async def work(c: Container) -> None:
        accepted = await c.trash.purge(trash_id=trash_id, metadata=ACTOR)
        click.echo(str(accepted.operation_id))

    _run(data_dir, work)
