"""``schemasaga drift`` and ``schemasaga verify``: exit 1 on any divergence, 2 when they cannot run."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings
from schemasaga.services.drift import DriftReport


@click.command()
@data_dir_option
@click.option("--database", default=None, help="Only this database (default: every registered one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drift(data_dir: Path | None, database: str | None, as_json: bool) -> None:
    """Compare each table's confirmed metadata with the live schema; exit 1 if anything drifted."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container
        from schemasaga.services.verify import scan_databases

        async with open_container(s, migrate=False) as c:
            scans = await scan_databases(c.drift, [database] if database else c.connections.names())
        if as_json:
            out: list[dict[str, Any]] = [report_json(r) for r in scans.reports]
            out += [{"database": name, "error": error} for name, error in scans.failed.items()]
            click.echo(json.dumps(out, indent=2))
        else:
            for r in scans.reports:
                click.echo(f"database {r.database}: {r.checked} checked, {len(r.drifted)} drifted")
                _echo_drifted(r)
                if r.unmanaged_tables:
                    click.echo(f"  not managed by schemasaga: {', '.join(r.unmanaged_tables)}")
            for name, error in scans.failed.items():
                click.echo(f"database {name}: NOT CHECKED: {error}")
        return 0 if scans.clean else 1

    sys.exit(asyncio.run(_run()))


def report_json(report: DriftReport) -> dict[str, Any]:
    return {
        "database": report.database,
        "checked": report.checked,
        "in_flight": report.in_flight,
        "clean": report.clean,
        "tables": [{"table_id": str(t.table_id), "name": t.name, "issues": t.issues} for t in report.drifted],
        "unmanaged_tables": report.unmanaged_tables,
    }


def _echo_drifted(report: DriftReport) -> None:
    for t in report.drifted:
        for issue in t.issues:
            click.echo(f"  {t.name} ({t.table_id}): {issue_text(issue)}")


def issue_text(issue: dict[str, Any]) -> str:
    parts = [issue["issue"].replace("_", " ")]
    if "column" in issue:
        parts.append(f"{issue['column']!r}")
    if "expected" in issue:
        parts.append(f"expected {issue['expected']}, found {issue['actual']}")
    if "detail" in issue:
        parts.append(f"({issue['detail']})")
    return " ".join(parts)


@click.command()
@data_dir_option
@click.option(
    "--wait", type=float, default=0.0, help="Seconds to wait for changes in flight to finish first."
)
def verify(data_dir: Path | None, wait: float) -> None:
    """Check every table's consistency and every operation's progress; exit 1 on any divergence."""
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container
        from schemasaga.services.verify import verify as run_verify

        async with open_container(s, migrate=False) as c:
            result = await run_verify(c.drift, c.reads, wait=wait)
        for name, error in result.scans.failed.items():
            click.echo(f"database {name}: NOT CHECKED: {error}")
        for r in result.scans.reports:
            verdict = "all consistent" if r.clean else f"{len(r.drifted)} DIVERGE"
            click.echo(f"database {r.database}: {r.checked} tables checked, {verdict}")
            _echo_drifted(r)
        in_flight, stuck = len(result.unsettled), len(result.stuck)
        click.echo(f"operations in flight: {in_flight}; stuck (no job will finish them): {stuck}")
        for op in result.stuck:
            click.echo(f"  STUCK {op.kind} {op.operation_id} on table {op.table_id} ({op.status})")
        failures = result.divergences
        click.echo("OK" if failures == 0 else f"FAILED: {failures} divergence(s)")
        return 0 if failures == 0 else 1

    sys.exit(asyncio.run(_run()))
