"""Applying every migration in order gives the same schema as the current schema file; procrastinate's
migrations are applied once each, in order, and tracked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from schemasaga.coredb.migrations import (
    PROCRASTINATE_PREFIX,
    PROCRASTINATE_SCHEMA,
    apply_migrations_only,
    procrastinate_migrations,
    upgrade,
)
from schemasaga.sql import migration_names, read_sql
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


PROCRASTINATE_CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'procrastinate%'
        ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text LIKE 'procrastinate%' ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'procrastinate%' ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%' ORDER BY 1, 2""",
    "enums": """
        SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        WHERE t.typname LIKE 'procrastinate%' ORDER BY 1, e.enumsortorder""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'procrastinate%' ORDER BY 1, 2""",
}


def procrastinate_schema_of(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(conninfo) as conn:
        return {name: conn.execute(q).fetchall() for name, q in PROCRASTINATE_CATALOG_QUERIES.items()}


def tracked(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM schemasaga_migrations ORDER BY name")]


def tracked_procrastinate(conninfo: str) -> list[str]:
    return [n for n in tracked(conninfo) if n.startswith(PROCRASTINATE_PREFIX)]


def installed_procrastinate_names() -> list[str]:
    return [m.name for m in procrastinate_migrations()]


def table_exists(conninfo: str, table: str) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def migrations_folder(tmp_path: Path, extra: dict[str, str]) -> Path:
    """A copy of the installed procrastinate's migrations plus ``extra`` files (name: SQL)."""
    folder = tmp_path / "procrastinate_migrations"
    folder.mkdir()
    for migration in procrastinate_migrations():
        (folder / migration.file.name).write_text(migration.file.read_text(encoding="utf-8"))
    for name, sql in extra.items():
        (folder / name).write_text(sql)
    return folder


def test_upgrade_is_idempotent_and_installs_the_job_queue(empty_pg_db: str) -> None:
    first = upgrade(empty_pg_db)
    assert first == ["schema.sql", PROCRASTINATE_SCHEMA]
    assert table_exists(empty_pg_db, "procrastinate_jobs")
    # Every migration the installed procrastinate ships is recorded: its schema.sql contains them all.
    names = installed_procrastinate_names()
    assert "procrastinate/03.04.00_50_post_add_retry_failed_job_procedure.sql" in names
    assert tracked_procrastinate(empty_pg_db) == sorted(names)
    assert upgrade(empty_pg_db) == []
    assert tracked_procrastinate(empty_pg_db) == sorted(names)


def test_procrastinate_migrations_are_found_in_version_order() -> None:
    names = installed_procrastinate_names()
    assert names[0] == "procrastinate/00.00.00_01_initial.sql"
    assert names.index("procrastinate/03.04.00_01_pre_add_retry_failed_job_procedure.sql") < names.index(
        "procrastinate/03.04.00_50_post_add_retry_failed_job_procedure.sql"
    )
    assert not any("future" in n or n.endswith("__init__.py") for n in names)
    versions = [(m.version, m.order) for m in procrastinate_migrations()]
    assert versions == sorted(versions)


def test_an_older_procrastinate_schema_gets_the_newer_migrations_in_order(
    pg_server: str, core_db: str
) -> None:
    """A database left at procrastinate 3.0's schema (built from procrastinate's own migration files,
    with its migrations tracked) is brought to the installed version's schema by upgrade."""
    migrations = procrastinate_migrations()
    old = [m for m in migrations if m.version <= (3, 0, 0)]
    newer = [m.name for m in migrations if m.version > (3, 0, 0)]
    assert newer, "the installed procrastinate has no migration after 3.0.0 to test with"
    name = create_database(pg_server)
    db = with_dbname(pg_server, name)
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            for migration in old:
                with conn.transaction():
                    conn.execute(migration.file.read_text(encoding="utf-8").encode())
            with conn.transaction():
                conn.execute(read_sql("schema.sql").encode())
                for tracked_name in [*migration_names(), *(m.name for m in old)]:
                    conn.execute("INSERT INTO schemasaga_migrations (name) VALUES (%s)", (tracked_name,))
        assert procrastinate_schema_of(db) != procrastinate_schema_of(core_db)

        assert upgrade(db) == newer
        assert procrastinate_schema_of(db) == procrastinate_schema_of(core_db)
        assert tracked_procrastinate(db) == sorted(installed_procrastinate_names())
        assert upgrade(db) == []
    finally:
        drop_database(pg_server, name)


def test_a_new_procrastinate_migration_is_applied_once_in_order_and_recorded(
    core_db: str, tmp_path: Path
) -> None:
    first = "procrastinate/98.00.00_01_pre_test_marker.sql"
    second = "procrastinate/98.00.00_50_post_test_marker.sql"
    folder = migrations_folder(
        tmp_path,
        {  # the second fails unless the first ran before it
            "98.00.00_50_post_test_marker.sql": "INSERT INTO procrastinate_test_marker VALUES (2, 'post');",
            "98.00.00_01_pre_test_marker.sql": (
                "CREATE TABLE procrastinate_test_marker (n int PRIMARY KEY, step text NOT NULL);"
                " INSERT INTO procrastinate_test_marker VALUES (1, 'pre');"
            ),
        },
    )
    assert upgrade(core_db, procrastinate_migrations_folder=folder) == [first, second]
    assert upgrade(core_db, procrastinate_migrations_folder=folder) == []
    with psycopg.connect(core_db) as conn:
        steps = [r[0] for r in conn.execute("SELECT step FROM procrastinate_test_marker ORDER BY n")]
    assert steps == ["pre", "post"]
    assert tracked_procrastinate(core_db) == sorted([*installed_procrastinate_names(), first, second])


def test_a_failing_procrastinate_migration_is_not_recorded_and_runs_again_next_time(
    core_db: str, tmp_path: Path
) -> None:
    folder = migrations_folder(
        tmp_path,
        {
            "98.00.00_01_pre_ok.sql": "CREATE TABLE procrastinate_test_ok (x int);",
            "98.00.00_50_post_fails.sql": "INSERT INTO procrastinate_test_missing VALUES (1);",
        },
    )
    with pytest.raises(psycopg.errors.UndefinedTable):
        upgrade(core_db, procrastinate_migrations_folder=folder)
    names = tracked_procrastinate(core_db)
    assert "procrastinate/98.00.00_01_pre_ok.sql" in names
    assert "procrastinate/98.00.00_50_post_fails.sql" not in names

    (folder / "98.00.00_50_post_fails.sql").write_text("CREATE TABLE procrastinate_test_missing (x int);")
    assert upgrade(core_db, procrastinate_migrations_folder=folder) == [
        "procrastinate/98.00.00_50_post_fails.sql"
    ]
    assert table_exists(core_db, "procrastinate_test_missing")


def forget_procrastinate_migrations(conninfo: str) -> None:
    """Leave the database as a schemasaga that did not track procrastinate's migrations left it."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("DELETE FROM schemasaga_migrations WHERE name LIKE 'procrastinate/%'")


def test_an_untracked_procrastinate_schema_counts_as_3_8(core_db: str) -> None:
    forget_procrastinate_migrations(core_db)
    before = procrastinate_schema_of(core_db)
    # Up to 3.10 every migration is <= 03.08.00: all are recorded and none runs (running
    # 00.00.00_01_initial.sql again would fail on the existing tables).
    assert upgrade(core_db) == []
    assert tracked_procrastinate(core_db) == sorted(installed_procrastinate_names())
    assert procrastinate_schema_of(core_db) == before
    assert upgrade(core_db) == []


def test_an_untracked_procrastinate_schema_gets_only_the_migrations_after_3_8(
    core_db: str, tmp_path: Path
) -> None:
    forget_procrastinate_migrations(core_db)
    folder = migrations_folder(
        tmp_path,
        {
            "03.08.00_99_test_not_run.sql": "CREATE TABLE procrastinate_test_not_run (x int);",
            "03.08.01_01_test_run.sql": "CREATE TABLE procrastinate_test_run (x int);",
        },
    )
    assert upgrade(core_db, procrastinate_migrations_folder=folder) == [
        "procrastinate/03.08.01_01_test_run.sql"
    ]
    assert table_exists(core_db, "procrastinate_test_run")
    assert not table_exists(core_db, "procrastinate_test_not_run")
    assert tracked_procrastinate(core_db) == sorted(
        [
            *installed_procrastinate_names(),
            "procrastinate/03.08.00_99_test_not_run.sql",
            "procrastinate/03.08.01_01_test_run.sql",
        ]
    )
    assert upgrade(core_db, procrastinate_migrations_folder=folder) == []


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


def test_migration_0005_puts_columns_in_the_order_their_events_added_them(empty_pg_db: str) -> None:
    import json
    import uuid

    before = [n for n in migration_names() if n < "0005"]
    table_id, created, added = uuid.uuid4(), uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    defaults = [{"name": n, "type": "text"} for n in ("id", "name", "created_at", "updated_at")]
    events = [
        (created, "TableCreated", {"table_id": str(table_id), "columns": defaults}),
        (added[0], "TableChanged", {"table_id": str(table_id), "action": "add", "column": {"name": "zeta"}}),
        (added[1], "TableChanged", {"table_id": str(table_id), "action": "add", "column": {"name": "ab"}}),
    ]
    columns = {c: {"name": c} for c in ("id", "name", "created_at", "updated_at", "zeta", "ab")}
    with psycopg.connect(empty_pg_db) as conn:
        for name in before:
            conn.execute(read_sql(f"migrations/{name}").encode())
        for version, (event_id, event_type, data) in enumerate(events):
            conn.execute(
                "INSERT INTO event_store_events (event_id, event_type, data, metadata) "
                "VALUES (%s, %s, %s, '{}')",
                (event_id, event_type, json.dumps(data)),
            )
            conn.execute(
                "INSERT INTO event_store_events_in_streams (stream, version, event_id) VALUES (%s, %s, %s)",
                (f"Table${table_id}", version, event_id),
            )
        conn.execute(
            "INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, columns, version, "
            "created_at, updated_at) VALUES (%s, 'default', 't', true, true, %s, 2, now(), now())",
            (table_id, json.dumps(columns)),
        )
        # As PostgreSQL keeps a jsonb object: shorter keys first.
        stored = conn.execute("SELECT columns FROM rm_tables").fetchone()
        assert stored is not None and list(stored[0])[:2] == ["ab", "id"]
        conn.execute(read_sql("migrations/0005_columns_in_the_order_they_were_added.sql").encode())
        row = conn.execute("SELECT columns FROM rm_tables").fetchone()
    assert row is not None
    assert [c["name"] for c in row[0]] == ["id", "name", "created_at", "updated_at", "zeta", "ab"]
