"""Which physical database a connection reaches, as the server itself tells it.

Two URLs that differ (``localhost`` and ``127.0.0.1``, a SQLite path through a symbolic link) may reach
one database, and two registrations of it would share its tables; comparing URLs cannot tell. An identity
is read on a connection instead, as one or more *keys*, each a digest of what one way of telling says:

* PostgreSQL ``cluster``: the cluster's ``system_identifier`` (``pg_control_system()``, which any role
  may call unless it was revoked), the database and ``current_schema()`` (where DDL goes). A physical
  copy of a cluster (restored from its base backup) keeps that identifier: it is taken for the same
  database, and its registration beside the original is refused.
  ``postmaster``: the server's start time and port, the database and schema; any role may read it, but
  it changes at every restart, so it is only compared between two identities read now.
* MySQL ``server_uuid``: ``@@server_uuid`` and ``DATABASE()``; MariaDB has no server UUID:
  ``server``: ``@@server_uid`` (a digest of a MAC address and the port) and ``DATABASE()``, or where
  it is missing ``@@hostname``, ``@@port``, ``@@datadir`` and ``DATABASE()``.
* SQLite ``path``: the real path of the file SQLite opened (symbolic links and ``..`` resolved);
  ``inode``: its device and inode, which also see through hard links and bind mounts but change when
  the file is replaced, so they too are only compared between identities read now.

Keys are digests: the identity says whether two databases are one, never where they are.

PostgreSQL identities also carry wider keys, never stored: ``database_keys`` (the cluster and the database,
whatever the schema) and ``server_keys`` (the cluster alone). They answer whether a registration reaches
the service's own core database, or the embedded server that holds it, under whatever URL or role.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from sqlalchemy import Connection, TextClause, text
from sqlalchemy.exc import DBAPIError


class Match(Enum):
    """What a stored key says about a fresh identity."""

    SAME = "same"
    DIFFERENT = "different"
    UNKNOWN = "unknown"  # read the other database's identity now to know


# Bases whose key may be stored with a registration and trusted later, in order of preference.
# A conclusive basis tells different databases apart: different keys mean different databases.
# SQLite's path is not: a hard link or a bind mount reaches the same file under another real path.
_STORED = ("postgresql.cluster", "mysql.server_uuid", "mysql.server", "sqlite.path")
_CONCLUSIVE = frozenset({"postgresql.cluster", "mysql.server_uuid", "mysql.server"})
# pg_control_system() revoked from the role (42501), absent (42883) or not offered (0A000) by the server.
PG_NO_CONTROL_FUNCTION = frozenset({"42501", "42883", "0A000"})

QUERIES: dict[str, TextClause] = {
    # In a query of its own: a role denied the function fails the whole statement, even in a CASE.
    "postgresql.cluster": text("SELECT system_identifier::text FROM pg_catalog.pg_control_system()"),
    # The start time as epoch seconds: its text would follow the session's TimeZone and DateStyle.
    "postgresql.postmaster": text(
        "SELECT extract(epoch FROM pg_catalog.pg_postmaster_start_time())::text, "
        "current_setting('port'), current_database(), current_schema()"
    ),
    # Both in one round trip, for a role that may call pg_control_system() (the postmaster query alone
    # otherwise): what every new connection to a registered database reads (byodb.verify).
    "postgresql.identity": text(
        "SELECT extract(epoch FROM pg_catalog.pg_postmaster_start_time())::text, "
        "current_setting('port'), current_database(), current_schema(), c.system_identifier::text "
        "FROM pg_catalog.pg_control_system() c"
    ),
    # SHOW rather than SELECT @@server_uuid, which is an error on MariaDB.
    "mysql.server_uuid": text("SHOW VARIABLES LIKE 'server_uuid'"),
    "mysql.server": text("SELECT @@hostname, @@port, @@datadir, DATABASE()"),
    # MariaDB: a digest of a network interface's MAC address and the port; SHOW, as for server_uuid.
    "mariadb.server_uid": text("SHOW VARIABLES LIKE 'server_uid'"),
    "sqlite.file": text("PRAGMA database_list"),
}


@dataclass(frozen=True, slots=True)
class DatabaseIdentity:
    """The keys of one database, by basis (``"postgresql.cluster"``...), each a hex digest."""

    keys: Mapping[str, str] = field(default_factory=dict)
    # Wider keys, compared only between identities read now (see the module's docstring).
    database_keys: Mapping[str, str] = field(default_factory=dict)
    server_keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def stored(self) -> str | None:
        """The key to store with a registration (``basis:digest``), or ``None`` if none may be stored."""
        basis = next((b for b in _STORED if b in self.keys), None)
        return None if basis is None else f"{basis}:{self.keys[basis]}"

    def same_as(self, other: DatabaseIdentity) -> bool:
        """Whether two identities read now are of one database: any basis both have gives the same key."""
        return any(other.keys.get(basis) == key for basis, key in self.keys.items())

    def same_database_as(self, other: DatabaseIdentity) -> bool:
        """Whether both are one database of one server, whatever their schemas."""
        return any(other.database_keys.get(basis) == key for basis, key in self.database_keys.items())

    def same_server_as(self, other: DatabaseIdentity) -> bool:
        """Whether both are on one server (one PostgreSQL cluster, or a physical copy of it)."""
        return any(other.server_keys.get(basis) == key for basis, key in self.server_keys.items())

    def against_stored(self, stored: str | None) -> Match:
        """What the key stored with another registration says about this (fresh) identity."""
        if stored is None:
            return Match.UNKNOWN
        basis, _, key = stored.partition(":")
        mine = self.keys.get(basis)
        if mine is None:
            return Match.UNKNOWN
        if mine == key:
            return Match.SAME
        return Match.DIFFERENT if basis in _CONCLUSIVE else Match.UNKNOWN


def _digest(*parts: object) -> str:
    text_parts = ["" if p is None else str(p) for p in parts]
    return hashlib.sha256("\x00".join(text_parts).encode()).hexdigest()[:32]


def read_identity(conn: Connection, *, engine: str) -> DatabaseIdentity:
    """The identity of the database ``conn`` is connected to (PostgreSQL: inside a transaction)."""
    if engine == "postgresql":
        return _postgresql(conn)
    if engine == "mysql":
        return _mysql(conn)
    return _sqlite(conn)


def _postgresql(conn: Connection) -> DatabaseIdentity:
    started, port, database, schema = conn.execute(QUERIES["postgresql.postmaster"]).one()
    try:
        with conn.begin_nested():  # a refusal must not abort the caller's transaction
            system_identifier = conn.execute(QUERIES["postgresql.cluster"]).scalar_one()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) not in PG_NO_CONTROL_FUNCTION:
            raise
        system_identifier = None
    return postgresql_identity(
        started=started, port=port, database=database, schema=schema, system_identifier=system_identifier
    )


def postgresql_identity(
    *, started: object, port: object, database: object, schema: object, system_identifier: object | None
) -> DatabaseIdentity:
    """A PostgreSQL identity from what :data:`QUERIES` read (``system_identifier`` None: not readable).
    Also used on the core database's own connections, to refuse registrations that reach it."""
    keys = {"postgresql.postmaster": _digest(started, port, database, schema)}
    database_keys = {"postgresql.postmaster": _digest(started, port, database)}
    server_keys = {"postgresql.postmaster": _digest(started, port)}
    if system_identifier is not None:
        keys["postgresql.cluster"] = _digest(system_identifier, database, schema)
        database_keys["postgresql.cluster"] = _digest(system_identifier, database)
        server_keys["postgresql.cluster"] = _digest(system_identifier)
    return DatabaseIdentity(keys, database_keys, server_keys)


def _mysql(conn: Connection) -> DatabaseIdentity:
    hostname, port, datadir, database = conn.execute(QUERIES["mysql.server"]).one()
    found = conn.execute(QUERIES["mysql.server_uuid"]).first()
    server_uuid = found[1] if found is not None else None
    uid = None if server_uuid else conn.execute(QUERIES["mariadb.server_uid"]).first()
    return mysql_identity(
        server_uuid=server_uuid,
        server_uid=uid[1] if uid is not None else None,
        hostname=hostname,
        port=port,
        datadir=datadir,
        database=database,
    )


def mysql_identity(
    *,
    server_uuid: object | None,
    server_uid: object | None,
    hostname: object,
    port: object,
    datadir: object,
    database: object,
) -> DatabaseIdentity:
    """A MySQL/MariaDB identity from what the server said (``None`` or empty: it has no such variable)."""
    if server_uuid:
        return DatabaseIdentity({"mysql.server_uuid": _digest(server_uuid, database)})
    # MariaDB: its server_uid tells apart two servers that share a host name, port and data
    # directory (the same pod name in two namespaces); hostname, port and datadir otherwise.
    if server_uid:
        return DatabaseIdentity({"mysql.server": _digest("server_uid", server_uid, database)})
    return DatabaseIdentity({"mysql.server": _digest(hostname, port, datadir, database)})


def _sqlite(conn: Connection) -> DatabaseIdentity:
    files = {row[1]: row[2] for row in conn.execute(QUERIES["sqlite.file"])}
    path = files.get("main") or ""
    if not path:
        return DatabaseIdentity()  # in memory: no file to be shared (refused as a BYODB anyway)
    stat = os.stat(path)
    return DatabaseIdentity(
        {
            "sqlite.path": _digest(os.path.realpath(path)),
            "sqlite.inode": _digest(stat.st_dev, stat.st_ino),
        }
    )
