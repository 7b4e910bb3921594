"""Core schema, migrations and named queries, loaded once from the ``.sql`` files beside this module."""

from __future__ import annotations

import functools
import re
from importlib import resources

_QUERY_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def read_sql(name: str) -> str:
    """The text of ``sql/<name>`` (for example ``schema.sql`` or ``migrations/0001_initial.sql``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def migration_names() -> list[str]:
    """Every migration file name, in the order they apply."""
    folder = resources.files(__package__).joinpath("migrations")
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))


@functools.cache
def queries(module: str) -> dict[str, str]:
    """The named queries of ``sql/queries/<module>.sql``: blocks that start with ``-- name: <name>``."""
    return parse_queries(read_sql(f"queries/{module}.sql"))


def parse_queries(text: str) -> dict[str, str]:
    """The named queries of a queries file's text (another checkout's, say, for an A/B bench)."""
    parts = _QUERY_HEADER.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        named[name] = body.strip().rstrip(";")
    return named
