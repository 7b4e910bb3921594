"""Apply the core schema: the whole schema on a fresh database, missing migrations otherwise."""

from __future__ import annotations

import logging

import psycopg
from procrastinate import App, SyncPsycopgConnector

from schemasaga.sql import migration_names, read_sql

log = logging.getLogger(__name__)

# Serializes concurrent upgrades (several processes starting at once) on one database.
_UPGRADE_LOCK_KEY = 0x5C4E3A5A6A


def upgrade(conninfo: str) -> list[str]:
    """Bring the core database at ``conninfo`` up to date; returns what was applied."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_UPGRADE_LOCK_KEY,))
        try:
            fresh = conn.execute("SELECT to_regclass('schemasaga_migrations') IS NULL").fetchone()
            with conn.transaction():
                if fresh is not None and fresh[0]:
                    conn.execute(read_sql("schema.sql").encode())
                    for name in migration_names():
                        conn.execute("INSERT INTO schemasaga_migrations (name) VALUES (%s)", (name,))
                    applied.append("schema.sql")
                else:
                    done = {r[0] for r in conn.execute("SELECT name FROM schemasaga_migrations")}
                    for name in migration_names():
                        if name in done:
                            continue
                        conn.execute(read_sql(f"migrations/{name}").encode())
                        conn.execute("INSERT INTO schemasaga_migrations (name) VALUES (%s)", (name,))
                        applied.append(name)
            has_jobs = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            if not (has_jobs and has_jobs[0]):
                _apply_procrastinate_schema(conninfo)
                applied.append("procrastinate")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_UPGRADE_LOCK_KEY,))
    for name in applied:
        log.info("applied %s", name)
    return applied


def apply_migrations_only(conninfo: str) -> None:
    """Apply every migration in order on an empty database (used to check them against schema.sql)."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        for name in migration_names():
            conn.execute(read_sql(f"migrations/{name}").encode())


def _apply_procrastinate_schema(conninfo: str) -> None:
    app = App(connector=SyncPsycopgConnector(conninfo=conninfo))
    with app.open():
        app.schema_manager.apply_schema()
