"""The allow-list of hosts and the SQLite directory that registration through the API must respect."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemasaga.domain.errors import DatabaseNotAllowed
from schemasaga.domain.policy import HostPattern, RegistrationPolicy, parse_allowed_hosts


@pytest.mark.parametrize(
    ("entry", "allowed", "refused"),
    [
        ("db.example.com", ["db.example.com", "DB.Example.com", "db.example.com."], ["x.db.example.com"]),
        ("DB.Example.com.", ["db.example.com", "db.example.com."], ["example.com"]),  # a fully qualified name
        ("*.example.com", ["a.example.com", "a.b.example.com"], ["example.com", "badexample.com"]),
        ("*.db.example.com", ["a.db.example.com"], ["db.example.com", "a.example.com"]),
        ("10.0.0.0/8", ["10.1.2.3"], ["11.0.0.1", "ten.example.com"]),
        ("10.1.2.3/8", ["10.200.0.1"], ["11.0.0.1"]),  # host bits set: the network they are in
        ("192.168.1.5", ["192.168.1.5"], ["192.168.1.6"]),
        ("::1", ["::1", "[::1]"], ["127.0.0.1"]),
        ("[::1]", ["::1", "[::1]"], ["::2", "localhost"]),
        ("fd00::/8", ["fd12::1"], ["fe80::1"]),
        ("/var/run/postgresql", ["/var/run/postgresql", "/var/run/postgresql/"], ["/tmp"]),
        ("/var/run/postgresql/", ["/var/run/postgresql", "/var/run/postgresql/"], ["/var/run"]),
        ("/", ["/", "//"], ["/tmp", "localhost"]),
        # a name never matches an address entry, nor the other way round: nothing is resolved
        ("127.0.0.1", ["127.0.0.1"], ["localhost"]),
        ("localhost", ["localhost"], ["127.0.0.1"]),
    ],
)
def test_host_patterns(entry: str, allowed: list[str], refused: list[str]) -> None:
    (pattern,) = parse_allowed_hosts(entry)
    assert [h for h in allowed if pattern.matches(h)] == allowed
    assert [h for h in refused if pattern.matches(h)] == []


# The messages are what an operator reads when the service refuses to start with this setting.
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network"),
        ("not/a/network", "'not/a/network' is not an IP network"),
        *[
            (entry, f"{entry!r} is not a host name, '*.domain', IP address or network")
            for entry in ("*", "*.", "a..b", "db.*.com", "*..com")
        ],
    ],
)
def test_malformed_entries_are_refused(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        parse_allowed_hosts(f"db.example.com, {entry} ")


def test_an_empty_entry_is_not_a_pattern() -> None:
    with pytest.raises(ValueError, match=r"^an empty entry$"):
        HostPattern.parse(" . ")


def test_an_empty_list_allows_any_host_but_sqlite_stays_in_its_directory(tmp_path: Path) -> None:
    policy = RegistrationPolicy.build(allowed_hosts=" , ", sqlite_dir=tmp_path)
    policy.check(engine="postgresql", host="anything.example", sqlite_path=None)
    policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path / "a" / "b.db"))
    with pytest.raises(DatabaseNotAllowed) as info:
        policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path.parent / "b.db"))
    assert info.value.message == (
        f"SQLite databases must be files in {tmp_path.resolve()} (SCHEMASAGA_SQLITE_DIR); "
        f"{tmp_path.parent.resolve() / 'b.db'} is not"
    )
    with pytest.raises(DatabaseNotAllowed):
        policy.check(engine="sqlite", host=None, sqlite_path=f"{tmp_path}-other/b.db")


def test_a_url_without_a_host_is_refused_when_there_is_a_list(tmp_path: Path) -> None:
    policy = RegistrationPolicy.build(allowed_hosts="db.example.com", sqlite_dir=tmp_path)
    with pytest.raises(DatabaseNotAllowed, match=r"^host None is not one"):
        policy.check(engine="mysql", host=None, sqlite_path=None)


def test_a_refused_host_is_named_but_the_list_is_not(tmp_path: Path) -> None:
    policy = RegistrationPolicy.build(allowed_hosts="db.example.com, 10.0.0.0/8", sqlite_dir=tmp_path)
    policy.check(engine="postgresql", host="10.1.1.1", sqlite_path=None)
    with pytest.raises(DatabaseNotAllowed) as info:
        policy.check(engine="postgresql", host="evil.example.net", sqlite_path=None)
    assert info.value.message == (
        "host 'evil.example.net' is not one this service may connect to (SCHEMASAGA_BYODB_ALLOWED_HOSTS)"
    )
    assert "db.example.com" not in info.value.message and "10.0.0.0" not in info.value.message
