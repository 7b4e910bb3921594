"""Who may do what: token scopes, the caller a request acts as, the token events, and the rules that
decide whether tokens are required and which ``Host`` headers are answered.

Pure: no I/O (``ipaddress`` only reads the bind address).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal

from schemasaga.domain.errors import Forbidden, InvalidTokenName, InvalidTokenScope

TOKEN_STREAM_PREFIX = "Token$"
TOKEN_PREFIX = "ssg_"
"""Every token starts with it, so that a leaked one is recognised (secret scanners, logs)."""

TOKEN_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")

AuthMode = Literal["auto", "required", "off"]


class Scope(StrEnum):
    """What a token may do; each scope may do everything the ones before it may."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def covers(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        raise InvalidTokenScope(f"invalid scope {value!r}: use read, write or admin") from None


def validate_token_name(name: str) -> None:
    if not TOKEN_NAME_PATTERN.fullmatch(name):
        raise InvalidTokenName(
            f"invalid token name {name!r}: use 1 to 63 lower-case letters, digits, '_', '.' and '-', "
            "starting with a letter"
        )


def token_stream(name: str) -> str:
    return f"{TOKEN_STREAM_PREFIX}{name}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts as. ``name`` is the token's (None: no token, when tokens are not required);
    ``databases`` the only databases it may touch (None: every one)."""

    name: str | None
    scope: Scope
    databases: frozenset[str] | None = None

    def require(self, needed: Scope, *, every_database: bool = False) -> None:
        """Raise :class:`Forbidden` unless the caller's scope covers ``needed`` (and, with
        ``every_database``, it is limited to no database: managing the registry or tokens reaches all)."""
        if not self.scope.covers(needed):
            raise Forbidden(f"token {self.name!r} has scope {self.scope.value}; this needs {needed.value}")
        if every_database and self.databases is not None:
            raise Forbidden(f"token {self.name!r} is limited to some databases; this needs one that is not")

    def may_use(self, database: str) -> bool:
        return self.databases is None or database in self.databases

    def require_database(self, database: str) -> None:
        if not self.may_use(database):
            raise Forbidden(f"token {self.name!r} may not touch database {database!r}")

    def visible(self, databases: Iterable[str]) -> list[str]:
        return [d for d in databases if self.may_use(d)]


OPEN = Caller(name=None, scope=Scope.ADMIN)
"""The caller of every request when tokens are not required."""


# -- events (stream ``Token$<name>``) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenEvent:
    name: str

    SCHEMA_VERSION: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class TokenCreated(TokenEvent):
    """Never the secret nor its hash: only what identifies the token (``lookup_id``, the part of the
    token before its secret) and what it may do."""

    scope: str
    databases: list[str] | None
    lookup_id: str


@dataclass(frozen=True, slots=True)
class TokenRevoked(TokenEvent):
    pass


# -- where the service listens -----------------------------------------------------------------------

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only. A name other than ``localhost`` is not
    trusted to be loopback (it could resolve anywhere), nor is ``0.0.0.0`` or ``::``."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tokens_required(mode: AuthMode, bind_host: str) -> bool:
    """``auto``: required unless the service listens on loopback only."""
    if mode == "auto":
        return not is_loopback(bind_host)
    return mode == "required"


def allowed_hosts(configured: str, bind_host: str) -> frozenset[str] | None:
    """The ``Host`` header names answered (None: any). Configured: those (``*`` for any); unset: the
    loopback names when listening on loopback, any otherwise."""
    names = [n.strip().lower() for n in configured.split(",") if n.strip()]
    if names:
        return None if "*" in names else frozenset(n.strip("[]") for n in names)
    return frozenset(LOOPBACK_NAMES) if is_loopback(bind_host) else None


def parse_listen_address(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or a bare ``PORT`` (on ``default_host``) -> (host, port). The host
    must be an IP address: a name would be resolved to pick the interface, and what it resolves to would
    decide who can reach the port and whether tokens are required (:func:`tokens_required`); a name is
    refused as written, before any lookup. A ValueError says what is wrong."""
    text = value.strip()
    shown = repr(text[:100])
    if text.isascii() and text.isdigit():
        host, port = default_host, text
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError(f"{shown} is not [IPv6]:PORT")
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host:
            raise ValueError(f"{shown} is not HOST:PORT (an IP address and a port, e.g. 127.0.0.1:9464)")
        if ":" in host:
            raise ValueError(f"{shown}: write an IPv6 address in brackets, e.g. [::1]:9464")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{host[:100]!r} is not an IP address: name the interface by its address (127.0.0.1, ::1, "
            "0.0.0.0...), a host name is not resolved"
        ) from None
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{port[:20]!r} is not a port (1 to 65535)")
    return str(address), int(port)
