"""The access rules: when tokens are required, which Host names are answered, what each scope may do."""

from __future__ import annotations

import pytest

from schemasaga.api.access import host_name
from schemasaga.bootstrap import describe_access
from schemasaga.config import Settings
from schemasaga.domain.access import (
    Caller,
    Scope,
    allowed_hosts,
    is_loopback,
    parse_listen_address,
    tokens_required,
)
from schemasaga.domain.errors import Forbidden


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.168.1.10", False),
        ("myhost", False),  # a name could resolve anywhere
        ("localhost.example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("mode", "host", "required"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "::1", False),
        ("auto", "localhost", False),
        ("auto", "0.0.0.0", True),
        ("auto", "::", True),
        ("auto", "10.1.2.3", True),
        ("auto", "schemasaga.internal", True),
        ("required", "127.0.0.1", True),
        ("required", "0.0.0.0", True),
        ("off", "0.0.0.0", False),
        ("off", "127.0.0.1", False),
    ],
)
def test_when_tokens_are_required(mode: str, host: str, required: bool) -> None:
    assert tokens_required(mode, host) is required  # type: ignore[arg-type]


def test_allowed_hosts_default_to_the_loopback_names_on_loopback_and_to_any_elsewhere() -> None:
    assert allowed_hosts("", "127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("", "0.0.0.0") is None
    assert allowed_hosts("api.example.com, [::1] ,LOCALHOST", "0.0.0.0") == {
        "api.example.com",
        "::1",
        "localhost",
    }
    assert allowed_hosts("*", "127.0.0.1") is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("evil.example:80", "evil.example"),
    ],
)
def test_the_name_of_a_host_header(header: str, name: str) -> None:
    assert host_name(header) == name


def test_each_scope_covers_the_ones_below_it() -> None:
    read, write, admin = (Caller(name=s.value, scope=s) for s in Scope)
    read.require(Scope.READ)
    with pytest.raises(Forbidden):
        read.require(Scope.WRITE)
    write.require(Scope.WRITE)
    with pytest.raises(Forbidden):
        write.require(Scope.ADMIN)
    admin.require(Scope.ADMIN, every_database=True)


def test_a_token_limited_to_databases_touches_only_them_and_manages_nothing() -> None:
    limited = Caller(name="ops", scope=Scope.ADMIN, databases=frozenset({"sales"}))
    limited.require_database("sales")
    with pytest.raises(Forbidden):
        limited.require_database("default")
    with pytest.raises(Forbidden):
        limited.require(Scope.ADMIN, every_database=True)
    assert limited.visible(["default", "sales", "hr"]) == ["sales"]


def _settings(**values: str) -> Settings:
    return Settings(
        **{"host": "127.0.0.1", "auth": "auto", "allowed_hosts": "", "cors_origins": "", **values}
    )


def test_start_up_says_which_mode_is_in_force() -> None:
    local = describe_access(_settings())
    assert local[0].startswith("access: no token required (SCHEMASAGA_AUTH=auto, listening on 127.0.0.1")
    assert local[1] == "access: Host headers answered: 127.0.0.1, ::1, localhost"
    exposed = describe_access(_settings(host="0.0.0.0"))
    assert exposed[0].startswith("access: tokens required (SCHEMASAGA_AUTH=auto, listening on 0.0.0.0)")
    assert exposed[1].startswith("access: any Host header is answered")
    assert describe_access(_settings(auth="required"))[0].startswith(
        "access: tokens required (SCHEMASAGA_AUTH=required)"
    )
    assert describe_access(_settings(auth="off", host="0.0.0.0"))[0].startswith(
        "access: no token required (SCHEMASAGA_AUTH=off)"
    )


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (" 0.0.0.0:80 ", ("0.0.0.0", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_a_listen_address(value: str, address: tuple[str, int]) -> None:
    assert parse_listen_address(value) == address


@pytest.mark.parametrize(
    ("value", "why"),
    [
        # A name is refused as written: it would be resolved to pick the interface.
        ("localhost:9464", "not an IP address"),
        ("metrics.example.com:9464", "not an IP address"),
        ("::1:9464", "in brackets"),
        ("[::1]9464", r"not \[IPv6\]:PORT"),
        ("127.0.0.1", "not HOST:PORT"),
        (":9464", "not HOST:PORT"),
        ("127.0.0.1:0", "not a port"),
        ("127.0.0.1:65536", "not a port"),
        ("127.0.0.1:http", "not a port"),
        ("0", "not a port"),
        ("", "not HOST:PORT"),
    ],
)
def test_a_listen_address_refused(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_listen_address(value)
