"""``schemasaga db upgrade`` and ``schemasaga projections rebuild``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from schemasaga.cli.base import OperatorError, configure_logging, data_dir_option, settings

if TYPE_CHECKING:
    from schemasaga.coredb.rebuild import Progress


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
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Streams (tables, databases) per batch; each batch is one transaction.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="Seconds the swap waits for the live read models' lock before it catches up and retries.",
)
@click.option(
    "--progress-every",
    type=click.FloatRange(min=0.0),
    default=5.0,
    show_default=True,
    help="Seconds between progress lines when stderr is no terminal (a bar on a terminal).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes that read and fold the build's batches (this one and N-1 helpers; one per core).",
)
def rebuild(
    data_dir: Path | None, batch_size: int, lock_timeout: float, progress_every: float, workers: int
) -> None:
    """Rebuild the read models from the events, online: the new ones are built beside the live ones in
    batches while the service serves, then swapped in by one short transaction. One rebuild at a time;
    after a kill, running it again resumes after the last committed batch."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> None:
        from schemasaga.bootstrap import open_container
        from schemasaga.coredb.rebuild import OnlineRebuild, RebuildRunning, RebuildStalled

        async with open_container(s) as c:
            shown = ProgressShown(tty=sys.stderr.isatty(), every=progress_every)
            job = OnlineRebuild(
                c.resolved.core_conninfo,
                c.store,
                batch_size=batch_size,
                lock_timeout=lock_timeout,
                report=shown.show,
                workers=workers,
            )
            try:
                out = await job.run()
            except (RebuildRunning, RebuildStalled) as exc:
                raise OperatorError(str(exc)) from None
            finally:
                shown.close()
            resumed = f", resumed after {out.resumed_at} streams" if out.resumed_at else ""
            click.echo(
                f"rebuilt read models of {out.tables} tables and {out.databases} databases from "
                f"{out.events} events in {out.seconds:.1f} s{resumed}; {out.caught_up_streams} streams "
                "caught up with events appended meanwhile"
            )

    asyncio.run(_run())


class ProgressShown:
    """The rebuild's progress on stderr: a bar redrawn in place on a terminal, otherwise a line every
    ``every`` seconds (and at each phase's change), with the rate of events projected per second."""

    def __init__(self, *, tty: bool, every: float) -> None:
        self.tty = tty
        self.every = every
        self._last = 0.0
        self._phase = ""
        self._drawn = False

    def show(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.tty and p.phase == self._phase and now - self._last < self.every:
            return
        self._last, self._phase = now, p.phase
        share = p.streams_done / p.streams_total if p.streams_total else 1.0
        text = (
            f"{p.phase}: {p.streams_done:,}/{p.streams_total:,} streams ({share:.0%}), "
            f"{p.events:,} events, {p.rate:,.0f} events/s"
        )
        if self.tty:
            filled = int(share * 30)
            click.echo(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K", nl=False, err=True)
            self._drawn = True
        else:
            click.echo(f"rebuild {text}", err=True)

    def close(self) -> None:
        if self._drawn:
            click.echo("", err=True)
