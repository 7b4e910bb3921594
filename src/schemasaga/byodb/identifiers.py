"""Per-engine rules for user identifiers (table and column names).

Every name must match the portable :data:`~schemasaga.domain.columns.IDENTIFIER` shape, fit the engine's
length limit and not be one of the engine's reserved words (the lists are SQLAlchemy's own, so they are the
words its dialects would quote). Names are always quoted anyway; refusing reserved words keeps tables usable
by hand-written SQL.

Limits: PostgreSQL 63 *bytes* (NAMEDATALEN - 1; longer names are silently truncated by the server, so they
are refused here), MySQL/MariaDB 64 characters, SQLite has no limit of its own and we cap at 128 characters.

Case: a name is stored and quoted exactly as given (``Users`` stays ``Users``), but two names that differ
only in case are the same name for uniqueness, because MySQL compares column names and SQLite all names
case-insensitively. The adapter refuses to create ``Users`` next to ``users``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MARIADB, RESERVED_WORDS_MYSQL
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as PG_RESERVED_WORDS
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.domain.columns import IDENTIFIER

ENGINES = ("postgresql", "mysql", "sqlite")

MAX_LENGTH: dict[str, int] = {"postgresql": 63, "mysql": 64, "sqlite": 128}
"""Longest name per engine: bytes (UTF-8) on PostgreSQL, characters elsewhere."""

RESERVED_WORDS: dict[str, frozenset[str]] = {
    "postgresql": frozenset(w.lower() for w in PG_RESERVED_WORDS),
    # "mysql" covers MySQL and MariaDB: a name must be usable on either.
    "mysql": frozenset(w.lower() for w in RESERVED_WORDS_MYSQL | RESERVED_WORDS_MARIADB),
    "sqlite": frozenset(w.lower() for w in SQLiteIdentifierPreparer.reserved_words),
}

# Column names the engine keeps for itself: PostgreSQL refuses them, SQLite lets them shadow the rowid.
SYSTEM_COLUMNS: dict[str, frozenset[str]] = {
    "postgresql": frozenset({"oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"}),
    "mysql": frozenset(),
    "sqlite": frozenset({"rowid", "oid", "_rowid_"}),
}


class InvalidIdentifier(PermanentByodbError, ValueError):
    """A table or column name the engine cannot take; the message says why."""

    def __init__(self, message: str, *, engine: str | None = None) -> None:
        super().__init__(message, engine=engine, code=None)


def validate_identifier(name: str, *, engine: str, kind: str = "table") -> None:
    """Raise :class:`InvalidIdentifier` unless ``name`` is a valid table/column name on ``engine``."""
    if engine not in MAX_LENGTH:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if not isinstance(name, str) or name == "":
        raise InvalidIdentifier(f"{kind} name is empty", engine=engine)
    limit = MAX_LENGTH[engine]
    if engine == "postgresql":
        size = len(name.encode("utf-8"))
        if size > limit:
            raise InvalidIdentifier(
                f"{kind} name {name!r} is {size} bytes long; postgresql allows at most {limit} bytes",
                engine=engine,
            )
    elif len(name) > limit:
        raise InvalidIdentifier(
            f"{kind} name {name!r} is {len(name)} characters long; {engine} allows at most {limit}",
            engine=engine,
        )
    if IDENTIFIER.fullmatch(name) is None:
        raise InvalidIdentifier(
            f"{kind} name {name!r} is invalid: use ASCII letters, digits and underscores, "
            "not starting with a digit",
            engine=engine,
        )
    lowered = name.lower()
    if lowered in RESERVED_WORDS[engine]:
        raise InvalidIdentifier(f"{kind} name {name!r} is a reserved word in {engine}", engine=engine)
    if engine == "postgresql" and kind == "table" and lowered.startswith("pg_"):
        # The system catalogs (pg_class, pg_type...) come first in every search path: the table would
        # be created, but every later ALTER or DROP of it would reach the catalog of that name.
        raise InvalidIdentifier(
            f"{kind} name {name!r} starts with 'pg_', which postgresql keeps for its system catalogs",
            engine=engine,
        )
    if engine == "sqlite" and lowered.startswith("sqlite_"):
        raise InvalidIdentifier(
            f"{kind} name {name!r} starts with 'sqlite_', which sqlite reserves for itself", engine=engine
        )
    if kind == "column" and lowered in SYSTEM_COLUMNS[engine]:
        raise InvalidIdentifier(f"column name {name!r} is a system column name in {engine}", engine=engine)


PORTABLE_LENGTH = min(MAX_LENGTH.values())
"""The longest generated name, the same on every engine (ASCII, so bytes are characters)."""


def index_name(table: str, columns: Sequence[str], unique: bool) -> str:
    """A generated index name: ``uq_<table>_<columns>_<hash>`` or ``ix_...``, cut to fit every engine.

    The hash (of the table, the columns and uniqueness) keeps names apart where the readable part
    does not (``ix_a_b_c``: table ``a_b`` on ``c``, or table ``a`` on ``b, c``) or is cut: index names
    are unique per schema on PostgreSQL and per database on SQLite."""
    if not columns:
        raise ValueError("an index needs at least one column")
    prefix = "uq" if unique else "ix"
    key = "\x00".join([prefix, table, *columns])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    readable = f"{prefix}_{table}_{'_'.join(columns)}"[: PORTABLE_LENGTH - len(digest) - 1].rstrip("_")
    return f"{readable}_{digest}"
