"""Telling databases apart by the identities their servers give."""

from __future__ import annotations

from schemasaga.byodb.identity import DatabaseIdentity, Match

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
