"""The allow-list of hosts, the socket directories and the SQLite directory that registration through
the API must respect, and the URLs that would name another host than the one checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemasaga.byodb.urls import parse_database_url
from schemasaga.domain.errors import (
    DatabaseNotAllowed,
    InvalidDatabaseUrl,
    SocketNotAllowed,
    SqliteCompanionFile,
)
from schemasaga.domain.policy import HostPattern, RegistrationPolicy, parse_allowed_hosts, parse_socket_dirs


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


def test_unix_sockets_are_refused_unless_their_directory_is_allowed(tmp_path: Path) -> None:
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    (tmp_path / "link").symlink_to(sockets)
    policy = RegistrationPolicy.build(allowed_hosts="", sqlite_dir=tmp_path)
    for engine, host in [
        ("postgresql", "/var/run/postgresql"),
        ("postgresql", str(sockets)),
        ("postgresql", "@abstract"),  # libpq: Linux's abstract socket namespace
        ("mysql", "/var/run/mysqld/mysqld.sock"),
    ]:
        with pytest.raises(SocketNotAllowed, match="SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS"):
            policy.check(engine=engine, host=host, sqlite_path=None)

    policy = RegistrationPolicy.build(
        allowed_hosts="db.example.com", sqlite_dir=tmp_path, allowed_socket_dirs=f" {tmp_path / 'link'}/ "
    )
    # The directory at any spelling: through a symbolic link, with "..", with a trailing slash.
    for host in (str(sockets), f"{sockets}/", f"{sockets}/../sockets", str(tmp_path / "link")):
        policy.check(engine="postgresql", host=host, sqlite_path=None)
    policy.check(engine="mysql", host=f"{sockets}/mysqld.sock", sqlite_path=None)  # the file's directory
    for engine, host in [
        ("postgresql", str(tmp_path)),
        ("postgresql", f"{sockets}/inner"),
        ("postgresql", "@abstract"),
        ("mysql", str(sockets)),  # a socket file in tmp_path
    ]:
        with pytest.raises(SocketNotAllowed):
            policy.check(engine=engine, host=host, sqlite_path=None)
    # A socket entry of the host allow-list (as before the setting) names its directory explicitly too.
    legacy = RegistrationPolicy.build(allowed_hosts="/var/run/postgresql", sqlite_dir=tmp_path)
    legacy.check(engine="postgresql", host="/var/run/postgresql", sqlite_path=None)


def test_socket_dirs_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="'run/postgresql' is not an absolute directory"):
        parse_socket_dirs("/var/run/postgresql, run/postgresql")


@pytest.mark.parametrize(
    "name", ["a.db-wal", "a.db-shm", "a.db-journal", "a-wal", "a.sqlite3-mjA1B2C3D4", "a.db-mj0123abcd"]
)
def test_sqlite_companion_files_are_refused(tmp_path: Path, name: str) -> None:
    policy = RegistrationPolicy.build(allowed_hosts="", sqlite_dir=tmp_path)
    with pytest.raises(SqliteCompanionFile):
        policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path / name))


def test_a_link_to_a_companion_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.db").symlink_to(tmp_path / "a.db-wal")  # resolved first, whether it exists or not
    policy = RegistrationPolicy.build(allowed_hosts="", sqlite_dir=tmp_path)
    with pytest.raises(SqliteCompanionFile):
        policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path / "notes.db"))
    for name in ("a.db", "wal.db", "a-wal.db", "a.db-WAL2", "a.db-mj123"):
        policy.check(engine="sqlite", host=None, sqlite_path=str(tmp_path / name))


# Every way a URL can name more than one host, or a host elsewhere than its host part: none may pass a
# suffix entry while the driver connects to another host. Nothing here is resolved or connected to.
MULTI_HOST = [
    "postgresql+psycopg://u@127.0.0.1,db.example.com/x",
    "postgresql+psycopg://u@db.example.com,127.0.0.1/x",
    "postgresql+psycopg://u@[::1],db.example.com/x",
    "postgresql+psycopg://u@127.0.0.1:5432,db.example.com:5432/x",
    "postgresql+psycopg://u@db.example.com/x?host=127.0.0.1",
    "postgresql+psycopg://u@/x?host=127.0.0.1",
    "postgresql+psycopg://u@/x?host=127.0.0.1,db.example.com",
    "postgresql+psycopg://u@/x?host=/tmp,db.example.com",
    "postgresql+psycopg://u@/x?host=db.example.com&host=127.0.0.1",
    "postgresql+psycopg://u@db.example.com/x?hostaddr=127.0.0.1",
    "postgresql+psycopg://u@db.example.com/x?hostaddr=127.0.0.1,10.0.0.1",
    "postgresql+psycopg://u@db.example.com/x?port=5432,5433",
    "postgresql+psycopg://u@db.example.com/x?port=5432&port=5433",
    "postgresql+psycopg://u@db.example.com/x?service=other",
    "postgresql+psycopg://u@db.example.com/x?dbname=postgresql://127.0.0.1/x",
    "postgres://u@127.0.0.1,db.example.com/x",
    "mysql+pymysql://u@127.0.0.1,db.example.com/x",
    "mysql+pymysql://u@db.example.com/x?host=127.0.0.1",
    "mysql+pymysql://u@db.example.com/x?unix_socket=/var/run/mysqld/mysqld.sock",
]


@pytest.mark.parametrize("url", MULTI_HOST)
def test_every_host_a_url_names_is_checked_or_the_url_refused(url: str, tmp_path: Path) -> None:
    policy = RegistrationPolicy.build(allowed_hosts="*.example.com", sqlite_dir=tmp_path)
    with pytest.raises((InvalidDatabaseUrl, DatabaseNotAllowed)):
        parsed = parse_database_url(url)
        policy.check(engine=parsed.engine, host=parsed.display["host"], sqlite_path=None)


def test_the_one_host_a_url_names_is_what_the_driver_connects_to(tmp_path: Path) -> None:
    # What passes: one host, in the host part, and nothing in the query that names another.
    policy = RegistrationPolicy.build(allowed_hosts="*.example.com", sqlite_dir=tmp_path)
    for url in (
        "postgresql+psycopg://u@db.example.com:5433/x?sslmode=require",
        "mysql+pymysql://u@db.example.com/x?charset=utf8mb4",
    ):
        parsed = parse_database_url(url)
        policy.check(engine=parsed.engine, host=parsed.display["host"], sqlite_path=None)
        assert parsed.display["host"] == "db.example.com"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////tmp/a\nb.db",
        "sqlite:////tmp/a%0Ab.db",
        "sqlite:////tmp/a%1Bb.db",
        "sqlite:////tmp/a%7Fb.db",
        "postgresql+psycopg://u@db.example.com/x%0Ay",
        "postgresql+psycopg://u%0D@db.example.com/x",
    ],
)
def test_control_characters_are_refused(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match="control character"):
        parse_database_url(url)
