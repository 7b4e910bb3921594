"""A registered database: its name, its events (stream ``Database$<name>``) and the state they fold into.

Pure: no I/O. A URL appears only encrypted (``url_encrypted``, with the ``key_id`` of its key); the
``display`` parts (driver, host, port, database, username) are not secret.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from schemasaga.domain.errors import InvalidDatabaseName

STREAM_PREFIX = "Database$"
DEFAULT_DATABASE = "default"
"""The database configured by SCHEMASAGA_BYODB_URL."""

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


def stream_name(name: str) -> str:
    return f"{STREAM_PREFIX}{name}"


@dataclass(frozen=True, slots=True)
class DatabaseEvent:
    name: str

    SCHEMA_VERSION: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class DatabaseRegistered(DatabaseEvent):
    engine: str
    display: dict[str, Any]
    url_encrypted: str
    key_id: str
    # "config" for the default database, "api" for one registered at run time.
    source: str
    # Known when the connection was tried before accepting it.
    server_version: str | None
    # Which physical database it is, as its server said when the connection was tried (the stored key
    # of schemasaga.byodb.identity): None for the configured default, recorded without connecting, and
    # in events recorded before identities were (event_from_data gives None for a missing field).
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class DatabaseUrlChanged(DatabaseEvent):
    """The configured URL of a database changed (the default, from one start to the next)."""

    engine: str
    display: dict[str, Any]
    url_encrypted: str
    key_id: str


@dataclass(frozen=True, slots=True)
class DatabaseCredentialsRotated(DatabaseEvent):
    """The same URL, encrypted again with another key (``schemasaga secrets rotate``)."""

    url_encrypted: str
    key_id: str
    previous_key_id: str


@dataclass(frozen=True, slots=True)
class DatabaseStatusChanged(DatabaseEvent):
    """A check found the database reachable or not (recorded only when that, or its version, changed)."""

    status: str
    server_version: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DatabaseUnregistered(DatabaseEvent):
    pass


EVENT_TYPES: dict[str, type[DatabaseEvent]] = {
    cls.__name__: cls
    for cls in (
        DatabaseRegistered,
        DatabaseUrlChanged,
        DatabaseCredentialsRotated,
        DatabaseStatusChanged,
        DatabaseUnregistered,
    )
}


def event_from_data(event_type: str, data: dict[str, Any]) -> DatabaseEvent:
    """The event from its stored data; a field added since it was stored takes ``None``."""
    cls = EVENT_TYPES[event_type]
    kwargs: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
    return cls(**kwargs)


STATUS_UNKNOWN = "unknown"
STATUS_AVAILABLE = "available"
STATUS_UNREACHABLE = "unreachable"


@dataclass
class DatabaseState:
    """A database as its events leave it. ``version`` is its stream's version (-1: no stream yet)."""

    name: str
    version: int = -1
    registered: bool = False
    engine: str = ""
    display: dict[str, Any] = field(default_factory=dict)
    url_encrypted: str = ""
    key_id: str = ""
    source: str = ""
    status: str = STATUS_UNKNOWN
    server_version: str | None = None
    identity: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def apply(self, event: DatabaseEvent, at: datetime) -> None:
        match event:
            case DatabaseRegistered():
                self.registered = True
                self.engine, self.display, self.source = event.engine, dict(event.display), event.source
                self.url_encrypted, self.key_id = event.url_encrypted, event.key_id
                self.server_version, self.identity = event.server_version, event.identity
                self.status = STATUS_AVAILABLE if event.server_version is not None else STATUS_UNKNOWN
                self.created_at = at
            case DatabaseUrlChanged():
                self.engine, self.display = event.engine, dict(event.display)
                self.url_encrypted, self.key_id = event.url_encrypted, event.key_id
                self.status, self.server_version = STATUS_UNKNOWN, None
                self.identity = None  # another URL may reach another database
            case DatabaseCredentialsRotated():
                self.url_encrypted, self.key_id = event.url_encrypted, event.key_id
            case DatabaseStatusChanged():
                self.status, self.server_version = event.status, event.server_version
            case DatabaseUnregistered():
                self.registered = False
                self.url_encrypted, self.identity = "", None
        self.version += 1
        self.updated_at = at


def fold(name: str, events: Iterable[tuple[DatabaseEvent, datetime]]) -> DatabaseState:
    """The state of database ``name`` after its events (each with the time it was recorded)."""
    state = DatabaseState(name=name)
    for event, at in events:
        state.apply(event, at)
    return state
