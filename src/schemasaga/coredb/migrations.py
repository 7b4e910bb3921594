"""Apply the core schema and procrastinate's: each whole on a fresh database, missing migrations otherwise.

Both are tracked in ``schemasaga_migrations``: the core's migrations under their file names
(``0002_name_held_until_deleted.sql``), procrastinate's under ``procrastinate/<file name>``
(``procrastinate/03.04.00_50_post_add_retry_failed_job_procedure.sql``).
"""

from __future__ import annotations

import functools
import logging
import re
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, NamedTuple

import psycopg

from schemasaga.sql import migration_names, read_sql

log = logging.getLogger(__name__)

# Serializes concurrent upgrades (several processes starting at once) on one database.
_UPGRADE_LOCK_KEY = 0x5C4E3A5A6A

PROCRASTINATE_PREFIX = "procrastinate/"
PROCRASTINATE_SCHEMA = PROCRASTINATE_PREFIX + "schema.sql"

# procrastinate names its migrations after the version that brought them, then their order within it:
# 03.04.00_01_pre_add_retry_failed_job_procedure.sql.
_PROCRASTINATE_MIGRATION = re.compile(r"^(\d+)\.(\d+)\.(\d+)_(\d+)_[^/]*\.sql$")

# Databases whose procrastinate schema was installed by a schemasaga that did not track procrastinate's
# migrations yet: that schemasaga applied procrastinate's whole schema.sql once, when procrastinate_jobs
# was missing, and never changed it afterwards; and it required procrastinate >= 3.8 (for
# ``configure(connection=...)``). So such a schema is at least 3.8.0's: every migration up to 03.08.00
# is in it already (running one again would fail, e.g. on a table or an enum value that exists), and
# the later ones are applied. (3.10.0, the newest when this was written, ships no migration after
# 03.04.00 and the same schema.sql as 3.8.0, so no such database is ahead of 3.8.0's schema yet.)
_UNTRACKED_SCHEMA_IS_AT_LEAST = (3, 8, 0)


class ProcrastinateMigration(NamedTuple):
    version: tuple[int, int, int]
    order: int
    file: Traversable

    @property
    def name(self) -> str:
        """The name it is tracked under in ``schemasaga_migrations``."""
        return PROCRASTINATE_PREFIX + self.file.name


def procrastinate_migrations(folder: Traversable | None = None) -> list[ProcrastinateMigration]:
    """The migrations of the installed procrastinate (or those in ``folder``), in the order they apply."""
    if folder is None:
        folder = resources.files("procrastinate.sql").joinpath("migrations")
    found: list[ProcrastinateMigration] = []
    for file in folder.iterdir():
        if not file.name.endswith(".sql"):
            continue
        match = _PROCRASTINATE_MIGRATION.match(file.name)
        if match is None:  # a migration we cannot place must not be skipped silently
            raise RuntimeError(f"procrastinate migration with an unexpected name: {file.name}")
        major, minor, patch, order = (int(g) for g in match.groups())
        found.append(ProcrastinateMigration((major, minor, patch), order, file))
    return sorted(found, key=lambda m: (m.version, m.order, m.file.name))


def upgrade(conninfo: str, *, procrastinate_migrations_folder: Traversable | None = None) -> list[str]:
    """Bring the core database at ``conninfo`` up to date; returns what was applied, in order.

    ``procrastinate_migrations_folder`` replaces the installed procrastinate's migrations (for tests).
    """
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_UPGRADE_LOCK_KEY,))
        try:
            applied += _upgrade_core(conn)
            applied += _upgrade_procrastinate(conn, procrastinate_migrations(procrastinate_migrations_folder))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_UPGRADE_LOCK_KEY,))
    for name in applied:
        log.info("applied %s", name)
    return applied


async def missing_migrations(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """The migrations (ours and procrastinate's) this version expects that the core database lacks:
    empty when its schema is the expected one. Raises :class:`psycopg.errors.UndefinedTable` when it
    has no schemasaga schema at all."""
    expected = _expected_migrations()
    cur = await conn.execute("SELECT name FROM schemasaga_migrations")
    applied = {str(row[0]) for row in await cur.fetchall()}
    return [name for name in expected if name not in applied]


@functools.cache
def _expected_migrations() -> tuple[str, ...]:
    return (*migration_names(), *(m.name for m in procrastinate_migrations()))


def apply_migrations_only(conninfo: str) -> None:
    """Apply every migration in order on an empty database (used to check them against schema.sql)."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        for name in migration_names():
            conn.execute(read_sql(f"migrations/{name}").encode())


def _upgrade_core(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    applied: list[str] = []
    fresh = conn.execute("SELECT to_regclass('schemasaga_migrations') IS NULL").fetchone()
    with conn.transaction():
        if fresh is not None and fresh[0]:
            conn.execute(read_sql("schema.sql").encode())
            for name in migration_names():
                _record(conn, name)
            applied.append("schema.sql")
        else:
            done = _applied_names(conn)
            for name in migration_names():
                if name in done:
                    continue
                conn.execute(read_sql(f"migrations/{name}").encode())
                _record(conn, name)
                applied.append(name)
    return applied


def _upgrade_procrastinate(
    conn: psycopg.Connection[tuple[object, ...]], migrations: list[ProcrastinateMigration]
) -> list[str]:
    has_jobs = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    if not (has_jobs and has_jobs[0]):
        # Fresh: the installed version's whole schema, which is what all of its migrations make.
        with conn.transaction():
            schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text(encoding="utf-8")
            conn.execute(schema.encode())
            for migration in migrations:
                _record(conn, migration.name)
        return [PROCRASTINATE_SCHEMA]
    done = {name for name in _applied_names(conn) if name.startswith(PROCRASTINATE_PREFIX)}
    if not done:
        # procrastinate's tables without any tracking: see _UNTRACKED_SCHEMA_IS_AT_LEAST.
        with conn.transaction():
            for migration in migrations:
                if migration.version <= _UNTRACKED_SCHEMA_IS_AT_LEAST:
                    _record(conn, migration.name)
                    done.add(migration.name)
        log.info(
            "procrastinate's schema had no tracked migrations: recorded those up to %s as applied",
            ".".join(map(str, _UNTRACKED_SCHEMA_IS_AT_LEAST)),
        )
    applied: list[str] = []
    for migration in migrations:
        if migration.name in done:
            continue
        # One transaction each: a migration that adds an enum value cannot share its transaction with
        # one that uses the value (procrastinate splits such changes into "pre" and "post" files).
        with conn.transaction():
            conn.execute(migration.file.read_text(encoding="utf-8").encode())
            _record(conn, migration.name)
        applied.append(migration.name)
    return applied


def _applied_names(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM schemasaga_migrations")}


def _record(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    conn.execute(
        "INSERT INTO schemasaga_migrations (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,)
    )
