"""Applying every migration in order gives the same schema as the current schema file."""

from __future__ import annotations

from typing import Any

import psycopg

from schemasaga.migrations import apply_migrations_only, upgrade
from tests.conftest import create_database, drop_database, with_dbname

CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE 'procrastinate%'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text NOT LIKE 'procrastinate%' ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace AND proname NOT LIKE 'procrastinate%' ORDER BY 1""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename NOT LIKE 'procrastinate%' ORDER BY 1, 2""",
}


def schema_of(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(conninfo) as conn:
        return {name: conn.execute(q).fetchall() for name, q in CATALOG_QUERIES.items()}


def test_migrations_give_the_schema_file(pg_server: str) -> None:
    from_file = create_database(pg_server)
    from_migrations = create_database(pg_server)
    try:
        upgrade(with_dbname(pg_server, from_file))
        apply_migrations_only(with_dbname(pg_server, from_migrations))
        file_schema = schema_of(with_dbname(pg_server, from_file))
        migrated_schema = schema_of(with_dbname(pg_server, from_migrations))
        assert file_schema["columns"], "the schema file created no tables"
        assert file_schema["functions"], "the schema file created no functions"
        assert migrated_schema == file_schema
    finally:
        drop_database(pg_server, from_file)
        drop_database(pg_server, from_migrations)


def test_upgrade_is_idempotent_and_installs_the_job_queue(empty_pg_db: str) -> None:
    first = upgrade(empty_pg_db)
    assert first == ["schema.sql", "procrastinate"]
    assert upgrade(empty_pg_db) == []
    with psycopg.connect(empty_pg_db) as conn:
        row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        assert row is not None and row[0]
