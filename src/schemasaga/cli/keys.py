"""``schemasaga secrets generate-key`` and ``schemasaga secrets rotate``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings


@click.group()
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
    s = settings(data_dir=data_dir)
    configure_logging(s, one_shot=True)

    async def _run() -> int:
        from schemasaga.bootstrap import open_container
        from schemasaga.secrets import SecretsError, key_file_path, parse_keys, uses_key_file
        from schemasaga.secrets import generate_key as make_key
        from schemasaga.services.keys import rotate_keys

        generated = new_key is None
        try:
            key = make_key() if new_key is None else parse_keys(new_key)[0]
        except SecretsError as exc:
            click.echo(f"--new-key: {exc}", err=True)
            return 2
        async with open_container(s) as c:
            key_file = key_file_path(s) if uses_key_file(s) else None
            embedded = c.resolved.embedded
            others = await asyncio.to_thread(embedded.other_users) if embedded and key_file else []
            if others:
                # They hold the old key in memory: a database they register after the rotation would
                # be encrypted with it, and lost once the key file holds only the new key.
                click.echo(
                    f"processes {others} use {s.data_dir} with the key file's current key: "
                    "stop them (serve, worker) first, then rotate and start them again",
                    err=True,
                )
                return 2
            try:
                rotation = await rotate_keys(
                    c.databases,
                    current=c.secrets,
                    new_key=key,
                    key_file=key_file,
                    metadata={"actor": "cli:secrets rotate"},
                    webhooks=c.webhooks,
                )
            except SecretsError as exc:
                click.echo(str(exc), err=True)
                return 1
        names = rotation.databases
        click.echo(
            f"re-encrypted {len(names)} database URL(s) with key {rotation.key_id}: {', '.join(names)}"
        )
        if rotation.webhooks:
            click.echo(f"re-encrypted the URL and secret of {len(rotation.webhooks)} webhook(s)")
        if key_file is not None:
            click.echo(f"the key file {key_file} now holds only the new key")
        else:
            if generated:
                click.echo(f"new key (keep it secret): {key}")
            click.echo("now give every process SCHEMASAGA_SECRET_KEY=<the new key> and restart it")
        return 0

    sys.exit(asyncio.run(_run()))
