"""Telling databases apart by the identities their servers give, and registrations stored before
identities were recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from schemasaga.byodb.identity import DatabaseIdentity, Match, postgresql_identity
from schemasaga.domain.database import (
    DatabaseRegistered,
    DatabaseState,
    DatabaseUrlChanged,
    event_from_data,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)
FULL = DatabaseIdentity({"postgresql.postmaster": "p1", "postgresql.cluster": "c1"})
PLAIN = DatabaseIdentity({"postgresql.postmaster": "p1"})  # a role denied pg_control_system()
OTHER = DatabaseIdentity({"postgresql.postmaster": "p2", "postgresql.cluster": "c2"})
FILE = DatabaseIdentity({"sqlite.path": "a", "sqlite.inode": "i1"})


def test_only_a_key_that_lasts_is_stored() -> None:
    assert FULL.stored == "postgresql.cluster:c1"
    assert PLAIN.stored is None  # the server's start time changes at its next restart
    assert FILE.stored == "sqlite.path:a"
    assert DatabaseIdentity({"mysql.server": "s"}).stored == "mysql.server:s"


def test_identities_read_now_compare_on_any_key_both_have() -> None:
    assert FULL.same_as(PLAIN) and PLAIN.same_as(FULL)
    assert not FULL.same_as(OTHER) and not PLAIN.same_as(OTHER)
    # A hard link: another real path, the same inode.
    assert FILE.same_as(DatabaseIdentity({"sqlite.path": "b", "sqlite.inode": "i1"}))
    assert not DatabaseIdentity().same_as(FULL)


def test_a_stored_key_decides_only_what_it_can() -> None:
    assert FULL.against_stored("postgresql.cluster:c1") is Match.SAME
    assert FULL.against_stored("postgresql.cluster:c2") is Match.DIFFERENT
    assert PLAIN.against_stored("postgresql.cluster:c1") is Match.UNKNOWN  # no key to compare with
    assert FULL.against_stored(None) is Match.UNKNOWN  # the default, or an older registration
    assert FILE.against_stored("sqlite.path:a") is Match.SAME
    assert FILE.against_stored("sqlite.path:b") is Match.UNKNOWN  # maybe a hard link: ask the file


def registered(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "analytics",
        "engine": "sqlite",
        "display": {"database": "/x.db"},
        "url_encrypted": "token",
        "key_id": "k1",
        "source": "api",
        "server_version": "3.40.1",
    }
    return data | extra


def test_a_registration_stored_before_identities_loads_without_one() -> None:
    event = event_from_data("DatabaseRegistered", registered())
    assert isinstance(event, DatabaseRegistered) and event.identity is None
    state = DatabaseState(name="analytics")
    state.apply(event, NOW)
    assert state.registered and state.identity is None


def test_the_identity_is_kept_until_the_url_changes() -> None:
    state = DatabaseState(name="analytics")
    state.apply(event_from_data("DatabaseRegistered", registered(identity="sqlite.path:a")), NOW)
    assert state.identity == "sqlite.path:a"
    state.apply(
        DatabaseUrlChanged(name="analytics", engine="sqlite", display={}, url_encrypted="t2", key_id="k1"),
        NOW,
    )
    assert state.identity is None


def pg(
    database: str, *, schema: str = "public", cluster: str | None = "c1", started: str = "1"
) -> DatabaseIdentity:
    return postgresql_identity(
        started=started, port="5432", database=database, schema=schema, system_identifier=cluster
    )


def test_wider_keys_tell_one_database_whatever_its_schema_and_one_server() -> None:
    core = pg("core")
    assert core.same_database_as(pg("core", schema="elsewhere"))
    assert not core.same_as(pg("core", schema="elsewhere"))  # registrations of two schemas stay two
    assert core.same_database_as(pg("core", cluster=None))  # a role denied pg_control_system()
    assert not core.same_database_as(pg("other"))
    assert core.same_server_as(pg("other")) and core.same_server_as(pg("other", cluster=None))
    assert not core.same_server_as(pg("core", cluster="c2", started="2"))
    # Never stored: only the place DDL goes is.
    assert core.stored == pg("core", schema="public").stored != pg("core", schema="elsewhere").stored
