"""BYODB URLs: validation, the non-secret parts shown to users, and redaction.

No message built here ever holds the URL or its password: a malformed URL is described, not quoted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from schemasaga.byodb.engines import SUPPORTED, parse_url
from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.domain.errors import InvalidDatabaseUrl, UnsupportedDriver


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    engine: str
    display: dict[str, Any]
    password: str | None

    def __repr__(self) -> str:  # never the password
        return f"ParsedUrl(engine={self.engine!r}, display={self.display!r})"


def parse_database_url(url: str, *, from_api: bool = True) -> ParsedUrl:
    """Check that ``url`` names a supported engine; raises InvalidDatabaseUrl or UnsupportedDriver.

    A URL given through the API (``from_api``) must also name an absolute SQLite file and carry only
    the query parameters of :data:`API_QUERY`; the operator's configured URL may carry any."""
    if "\x00" in url:
        raise InvalidDatabaseUrl("the database URL contains a NUL character")
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
    if from_api:
        _check_control_characters(url, with_driver)
        _check_query(with_driver, engine)
        if "," in (with_driver.host or _socket_of(with_driver) or ""):
            # libpq reads a comma-separated host as a list and connects to the first that answers:
            # the allow-list would have matched the whole text (a suffix entry, its last name only).
            raise InvalidDatabaseUrl("the database URL names several hosts: register one host")
    if engine == "sqlite":
        path = with_driver.database or ""
        if from_api and not path.startswith("/"):
            raise InvalidDatabaseUrl(
                "a SQLite database needs an absolute file path (sqlite:////absolute/path.db): every "
                "process must find the same file"
            )
    elif not (with_driver.host or _socket_of(with_driver)):
        raise InvalidDatabaseUrl(f"the database URL has no host: expected {SUPPORTED}")
    return ParsedUrl(engine=engine, display=display_of(with_driver, engine), password=parsed.password)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_control_characters(url: str, parsed: URL) -> None:
    """No control character in the URL, nor once its parts are percent-decoded (a path with a newline
    names a file no operator can read back in a log or a listing)."""
    parts = (url, parsed.host, parsed.database, parsed.username, *map(str, parsed.query.values()))
    if any(part and _CONTROL.search(part) for part in parts):
        raise InvalidDatabaseUrl("the database URL contains a control character")


def with_real_path(url: str) -> str:
    """A SQLite URL naming its file by its real absolute path: symbolic links, ``..`` and
    ``/proc/self/cwd`` resolved now, so that what was checked is what every process opens later."""
    parsed = make_url(url)
    return parsed.set(database=os.path.realpath(parsed.database or "")).render_as_string(hide_password=False)


# The query parameters a URL registered through the API may carry, each with the values it may take.
# Nothing else: drivers read files named in their parameters (PyMySQL's read_default_file, libpq's
# passfile, service and SSL key files), quote what they read in their errors, and some parameters
# send the connection to another host than the URL's (libpq's host and hostaddr), past the host
# allow-list. A Unix socket is the one host given in the query, and only in a URL without a host.
_SOCKET_DIR = re.compile(r"^/[^\x00]*$")
API_QUERY: dict[str, dict[str, re.Pattern[str]]] = {
    "postgresql": {
        "sslmode": re.compile(r"^(disable|allow|prefer|require|verify-ca|verify-full)$"),
        "host": _SOCKET_DIR,
        "port": re.compile(r"^[0-9]{1,5}$"),
    },
    "mysql": {
        "charset": re.compile(r"^[a-z0-9_]{1,32}$"),
        "unix_socket": _SOCKET_DIR,
    },
    "sqlite": {},
}
_SOCKET_KEYS = {"host", "unix_socket"}


def _check_query(url: URL, engine: str) -> None:
    allowed = API_QUERY[engine]
    for key, value in url.query.items():
        values = value if isinstance(value, tuple) else (value,)
        pattern = allowed.get(key)
        if pattern is None:
            names = ", ".join(sorted(allowed)) or "none"
            raise InvalidDatabaseUrl(
                f"the database URL's query parameter {key!r} is not accepted (accepted for {engine}: {names})"
            )
        if len(values) != 1 or not pattern.fullmatch(values[0]):
            raise InvalidDatabaseUrl(f"the database URL's query parameter {key!r} has a value it cannot take")
        if key in _SOCKET_KEYS and url.host:
            raise InvalidDatabaseUrl(
                f"the database URL names a host and a socket ({key!r}): give one or the other"
            )


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
