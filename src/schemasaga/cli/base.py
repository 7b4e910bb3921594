"""What every command shares: settings with flag overrides, logging, and one way to fail."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from schemasaga.config import Settings


def settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    loaded = Settings()
    return loaded.model_copy(update=values) if values else loaded


def configure_logging(settings: Settings, *, one_shot: bool = False) -> None:
    """Service commands log INFO by default; one-shot commands (whose output is their answer) only
    WARNING and worse, unless SCHEMASAGA_LOG_LEVEL says otherwise. The format is
    SCHEMASAGA_LOG_FORMAT's (json or text; by default json unless stderr is a terminal)."""
    from schemasaga.observability import logs

    level = settings.log_level or ("WARNING" if one_shot else "INFO")
    logs.configure(level=level, log_format=settings.log_format, stream=sys.stderr)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of the embedded PostgreSQL (default ./.schemasaga, or SCHEMASAGA_DATA_DIR).",
)


class OperatorError(click.ClickException):
    """A problem an operator can fix: one line, exit status 2 (1 is verify's and drift's "divergence")."""

    exit_code = 2


class Cli(click.Group):
    """Errors an operator can fix (settings, an unreachable core database, a data dir that cannot be
    used) end the command with one line and exit status 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        import psycopg
        import pydantic
        from psycopg_pool import PoolTimeout

        from schemasaga.config import ConfigurationError
        from schemasaga.coredb.embedded import EmbeddedPostgresError

        try:
            return super().invoke(ctx)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"SCHEMASAGA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise OperatorError(f"invalid settings: {problems}") from None
        except ConfigurationError as exc:
            raise OperatorError(str(exc)) from None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # Never the URL: libpq's message names the host and port, not the password.
            raise OperatorError(f"the core database cannot be reached: {exc}") from None
        except psycopg.errors.UndefinedTable:
            raise OperatorError(
                "the core database has no schemasaga schema yet: run `schemasaga db upgrade` (or start "
                "`schemasaga serve` once)"
            ) from None
        except (EmbeddedPostgresError, OSError) as exc:
            raise OperatorError(str(exc)) from None
