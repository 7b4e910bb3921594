"""``schemasaga serve | worker | db | events | projections | drift | verify | secrets | tokens | trash``: one
module per command group; the logic each command runs lives in ``services``."""

from __future__ import annotations

import click

from schemasaga.cli import checks, db, events, keys, serve, tokens, trash
from schemasaga.cli.base import Cli


@click.group(cls=Cli)
@click.version_option(package_name="schemasaga")
def main() -> None:
    """Event-sourced table management for databases you own."""


main.add_command(serve.serve)
main.add_command(serve.worker)
main.add_command(db.db)
main.add_command(db.projections)
main.add_command(events.events)
main.add_command(checks.drift)
main.add_command(checks.verify)
main.add_command(keys.secrets)
main.add_command(tokens.tokens)
main.add_command(trash.trash)
