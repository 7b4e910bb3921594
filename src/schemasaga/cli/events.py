"""``schemasaga events tail`` and ``schemasaga events show``: the global log, as JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings
from schemasaga.eventstore import RecordedEvent


@click.group()
def events() -> None:
    """Read the event store."""


def event_json(e: RecordedEvent) -> dict[str, Any]:
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
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> None:
        from schemasaga.bootstrap import open_container

        async with open_container(s, migrate=False) as c:
            after = None if from_start else await c.store.current_checkpoint()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)

            async def follow() -> None:
                async for event in c.store.follow(after=after):
                    click.echo(json.dumps(event_json(event), default=str), nl=True)

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
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container
        from schemasaga.eventstore import EventNotFound

        async with open_container(s, migrate=False) as c:
            try:
                event = await c.store.get(event_id)
            except EventNotFound:
                click.echo(f"no event with id {event_id}", err=True)
                return 1
            out = event_json(event)
            out["streams"] = await c.store.streams_of(event_id)
            click.echo(json.dumps(out, indent=2, default=str))
            return 0

    sys.exit(asyncio.run(_run()))
