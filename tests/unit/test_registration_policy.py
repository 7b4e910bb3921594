"""The allow-list of hosts and the SQLite directory that registration through the API must respect."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemasaga.domain.errors import DatabaseNotAllowed
from schemasaga.domain.policy import RegistrationPolicy, parse_allowed_hosts


@pytest.mark.parametrize(
    ("entry", "allowed", "refused"),
    [
        ("db.example.com", ["db.example.com", "DB.Example.com", "db.example.com."], ["x.db.example.com"]),
        ("*.example.com", ["a.example.com", "a.b.example.com"], ["example.com", "badexample.com"]),
        ("10.0.0.0/8", ["10.1.2.3"], ["11.0.0.1", "ten.example.com"]),
        ("192.168.1.5", ["192.168.1.5"], ["192.168.1.6"]),
        ("::1", ["::1", "[::1]"], ["127.0.0.1"]),
        ("fd00::/8", ["fd12::1"], ["fe80::1"]),
        ("/var/run/postgresql", ["/var/run/postgresql", "/var/run/postgresql/"], ["/tmp"]),
        # a name never matches an address entry, nor the other way round: nothing is resolved
        ("127.0.0.1", ["127.0.0.1"], ["localhost"]),
        ("localhost", ["localhost"], ["127.0.0.1"]),
    ],
)
def test_host_patterns(entry: str, allowed: list[str], refused: list[str]) -> None:
    (pattern,) = parse_allowed_hosts(entry)
    assert [h for h in allowed if pattern.matches(h)] == allowed
    assert [h for h in refused if pattern.matches(h)] == []


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "*", "*.", "a..b", "db.*.com", "not/a/network"])
def test_malformed_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_allowed_hosts(f"db.example.com, {entry}")


def test_an_empty_list_allows_any_host_but_sqlite_stays_in_its_directory(tmp_path: Path) -> None:
    policy = RegistrationPolicy.build(allowed_hosts=" , ", sqlite_dir=tmp_path)
    policy.check(engine="postgresql", host="anything.example", sqlite_path=None)
    policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path / "a" / "b.db"))
    with pytest.raises(DatabaseNotAllowed):
        policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path.parent / "b.db"))
    with pytest.raises(DatabaseNotAllowed):
        policy.check(engine="sqlite", host=None, sqlite_path=f"{tmp_path}-other/b.db")


def test_a_url_without_a_host_is_refused_when_there_is_a_list(tmp_path: Path) -> None:
    policy = RegistrationPolicy.build(allowed_hosts="db.example.com", sqlite_dir=tmp_path)
    with pytest.raises(DatabaseNotAllowed):
        policy.check(engine="mysql", host=None, sqlite_path=None)
