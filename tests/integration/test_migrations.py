"""Applying every migration in order gives the same schema as the current schema file."""

from __future__ import annotations

from typing import Any

import psycopg

from schemasaga.coredb.migrations import apply_migrations_only, upgrade
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


def test_migration_0002_keeps_the_name_of_a_table_whose_deletion_is_in_flight(empty_pg_db: str) -> None:
    from schemasaga.sql import read_sql

    with psycopg.connect(empty_pg_db) as conn:
        conn.execute(read_sql("migrations/0001_initial.sql").encode())
        rows = [  # (name, deleted, the deletion's status)
            ("live", False, None),
            ("being_deleted", True, "running"),
            ("queued_deletion", True, "pending"),
            ("gone", True, "completed"),
        ]
        for name, deleted, status in rows:
            table_id = conn.execute(
                "INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, deleted, columns,"
                " version, created_at, updated_at)"
                " VALUES (gen_random_uuid(), 'default', %s, true, true, %s, '{}', 1, now(), now())"
                " RETURNING table_id",
                (name, deleted),
            ).fetchone()[0]  # type: ignore[index]
            if status:
                conn.execute(
                    "INSERT INTO rm_operations (operation_id, table_id, kind, status, accepted_seq,"
                    " created_at, updated_at)"
                    " VALUES (gen_random_uuid(), %s, 'delete_table', %s, 1, now(), now())",
                    (table_id, status),
                )
        conn.execute(read_sql("migrations/0002_name_held_until_deleted.sql").encode())
        held = dict(conn.execute("SELECT name, holds_name FROM rm_tables").fetchall())
    assert held == {"live": True, "being_deleted": True, "queued_deletion": True, "gone": False}


def test_migration_0003_gives_stream_rows_their_events_transaction(empty_pg_db: str) -> None:
    from schemasaga.sql import read_sql

    with psycopg.connect(empty_pg_db) as conn:
        for name in ("0001_initial.sql", "0002_name_held_until_deleted.sql"):
            conn.execute(read_sql(f"migrations/{name}").encode())
        conn.execute(
            "INSERT INTO event_store_events (event_id, event_type, data, metadata, tx_id)"
            " VALUES (gen_random_uuid(), 'A', '{}', '{}', '7'), (gen_random_uuid(), 'B', '{}', '{}', '9')"
        )
        conn.execute(
            "INSERT INTO event_store_events_in_streams (stream, version, event_id)"
            " SELECT 's', row_number() OVER (ORDER BY position) - 1, event_id FROM event_store_events"
        )
        conn.execute(read_sql("migrations/0003_stream_rows_carry_their_transaction.sql").encode())
        rows = conn.execute(
            "SELECT version, tx_id::text FROM event_store_events_in_streams ORDER BY version"
        ).fetchall()
        assert rows == [(0, "7"), (1, "9")]
        # New rows get the writing transaction.
        event = conn.execute("SELECT event_id FROM event_store_events WHERE event_type = 'A'").fetchone()
        assert event is not None
        conn.execute(
            "INSERT INTO event_store_events_in_streams (stream, version, event_id) VALUES ('l', 0, %s)",
            (event[0],),
        )
        row = conn.execute(
            "SELECT tx_id = pg_current_xact_id() FROM event_store_events_in_streams WHERE stream = 'l'"
        ).fetchone()
    assert row == (True,)
