"""Database names and URLs: validation, the non-secret parts shown to users, and redaction.

No message built here ever holds the URL or its password: a malformed URL is described, not quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from schemasaga.byodb.engines import SUPPORTED, parse_url
from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.catalog import DEFAULT_DATABASE
from schemasaga.databases.errors import InvalidDatabaseName, InvalidDatabaseUrl, UnsupportedDriver

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def validate_name(name: str, *, allow_default: bool = False) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidDatabaseName(
            f"invalid database name {name!r}: use 1 to 63 lower-case letters, digits and underscores, "
            "starting with a letter"
        )
    if name == DEFAULT_DATABASE and not allow_default:
        raise InvalidDatabaseName(
            f"the name {DEFAULT_DATABASE!r} is reserved for the database configured by SCHEMASAGA_BYODB_URL"
        )


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    engine: str
    display: dict[str, Any]
    password: str | None

    def __repr__(self) -> str:  # never the password
        return f"ParsedUrl(engine={self.engine!r}, display={self.display!r})"


def parse_database_url(url: str, *, require_absolute_sqlite: bool = True) -> ParsedUrl:
    """Check that ``url`` names a supported engine; raises InvalidDatabaseUrl or UnsupportedDriver."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise InvalidDatabaseUrl(
            "the database URL is malformed: expected driver://user:password@host:port/database "
            f"({SUPPORTED}); special characters in the password must be percent-encoded"
        ) from None
    try:
        engine, with_driver = parse_url(parsed)
    except PermanentByodbError as exc:
        if exc.code == "driver":
            raise UnsupportedDriver(
                f"unsupported database driver {parsed.drivername!r}: use {SUPPORTED}"
            ) from None
        raise InvalidDatabaseUrl(redact(str(exc), url)) from None
    if engine == "sqlite":
        path = with_driver.database or ""
        if require_absolute_sqlite and not path.startswith("/"):
            raise InvalidDatabaseUrl(
                "a SQLite database needs an absolute file path (sqlite:////absolute/path.db): every "
                "process must find the same file"
            )
    elif not (with_driver.host or _socket_of(with_driver)):
        raise InvalidDatabaseUrl(f"the database URL has no host: expected {SUPPORTED}")
    return ParsedUrl(engine=engine, display=display_of(with_driver, engine), password=parsed.password)


def _socket_of(url: URL) -> str | None:
    """A Unix-socket location given in the query (libpq ``host=/dir``, PyMySQL ``unix_socket=``)."""
    for key in ("host", "unix_socket"):
        value = url.query.get(key)
        if isinstance(value, tuple):
            value = value[0] if value else None
        if value:
            return str(value)
    return None


def display_of(url: URL, engine: str) -> dict[str, Any]:
    """The parts of a URL that may be shown: never the password, nor the query (it may hold one)."""
    if engine == "sqlite":
        return {
            "driver": url.drivername,
            "host": None,
            "port": None,
            "database": url.database,
            "username": None,
        }
    default_port = {"postgresql": 5432, "mysql": 3306}.get(engine)
    return {
        "driver": url.drivername,
        "host": url.host or _socket_of(url),
        "port": url.port or default_port,
        "database": url.database,
        "username": url.username,
    }


def redact(text: str, url: str) -> str:
    """``text`` with the URL and its password (in any spelling a driver may echo) replaced by ``***``."""
    secrets = {url}
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError, TypeError):
        password = None
    if password:
        secrets |= {password, quote(password, safe=""), quote_plus(password)}
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
