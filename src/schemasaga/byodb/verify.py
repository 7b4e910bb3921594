"""Every new connection to a registered database reaches the database that was registered.

A registration reads the identity of the database its URL reaches (:mod:`schemasaga.byodb.identity`) on
one probe connection, and is refused when that is the service's own core database or a database registered
under another name. Every later connection resolves the URL's host name again: a name whose answer changed
since (DNS rebinding, or a name re-pointed on purpose) would take a saga's DDL to another server, the
core's included. So each new *physical* connection (the pool reuses them: this costs one round trip per
connection made, not per statement) reads the identity again before anything runs on it, and is refused
unless:

* it is the identity stored with the registration, when one was stored; and
* on PostgreSQL, for a registration made through the API, it is not the service's own core database, nor
  (on the embedded server) any database of the server that holds it, compared with the core's identity
  as last read (:class:`CoreIdentity`).

A refused connection is closed (SQLAlchemy closes a connection whose ``connect`` event failed) and raises
:class:`WrongDatabase`, a *transient* error: the database is not reachable as registered, so a saga step
waits and retries with backoff, as through an outage; nothing runs against the other server, and neither
does a compensation, whose connections are checked the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from schemasaga.byodb.errors import TransientByodbError
from schemasaga.byodb.identity import (
    PG_NO_CONTROL_FUNCTION,
    QUERIES,
    DatabaseIdentity,
    Match,
    mysql_identity,
    postgresql_identity,
)

log = logging.getLogger(__name__)

# MySQL/MariaDB: "Unknown system variable" (a server without server_uuid, or without server_uid).
_MYSQL_UNKNOWN_VARIABLE = 1193


class WrongDatabase(TransientByodbError):
    """A new connection to a registered database reached another database (or one that can no longer be
    told to be it): the connection was closed before anything ran on it. Transient: the registered
    database is not reachable as registered now; retrying later may find it again."""


class CoreIdentity:
    """The service's own core database's identity, as last read, for the checks of new BYODB connections
    (which run in threads and cannot wait for the core database). ``whole_server``: the embedded server,
    none of whose databases a registration may reach."""

    def __init__(self, *, whole_server: bool, read: Callable[[], Awaitable[DatabaseIdentity]]) -> None:
        self.whole_server = whole_server
        self.identity: DatabaseIdentity | None = None
        self._read = read

    async def refresh(self) -> None:
        """Read it unless what was read cannot change: a cluster's identifier is the server's for good,
        but without it (``pg_control_system()`` revoked from the core's role) the identity holds the
        server's start time, which a restart of the core server changes."""
        if self.identity is not None and "postgresql.cluster" in self.identity.keys:
            return
        self.identity = await self._read()


@dataclass(frozen=True, slots=True)
class Expected:
    """What every new connection of one registered database must reach.

    ``stored``: the identity stored when it was registered (``None``: none was, see the README);
    ``core``: compared with the service's own core database (PostgreSQL registrations from the API)."""

    name: str
    engine: str
    stored: str | None
    core: CoreIdentity | None = None

    @property
    def checks(self) -> bool:
        return self.engine in ("postgresql", "mysql") and (self.stored is not None or self.core is not None)

    def check(self, found: DatabaseIdentity) -> None:
        """Raise :class:`WrongDatabase` (and log it, once) unless ``found`` is what this database must be."""
        reason = self._refusal(found)
        if reason is None:
            return
        # The name only: never the URL (it may hold a password), nor the host it now resolves to.
        log.warning(
            "database %r: a new connection reached %s; it was closed before anything ran on it",
            self.name,
            reason,
        )
        raise WrongDatabase(
            f"database {self.name!r} is not reachable as registered: a new connection reached {reason}, "
            "and was closed before anything ran on it (its host name may lead to another server now)",
            engine=self.engine,
        )

    def _refusal(self, found: DatabaseIdentity) -> str | None:
        core = self.core
        if core is not None:
            own = core.identity
            if own is None:
                return "a database not yet compared with this service's own core database"
            if found.same_database_as(own):
                return "this service's own core database"
            if core.whole_server and found.same_server_as(own):
                return "the embedded PostgreSQL server that holds this service's own core database"
        if self.stored is None:
            return None
        match found.against_stored(self.stored):
            case Match.SAME:
                return None
            case Match.DIFFERENT:
                return "another database than the one registered"
            case Match.UNKNOWN:
                return (
                    "a database that does not give the kind of identity stored when it was registered "
                    "(another server, or, on PostgreSQL, pg_control_system() revoked from the role since)"
                )


def install(eng: Engine, expected: Expected) -> None:
    """Check every new connection of ``eng``: the last ``connect`` listener, after the engine's own.
    (MySQL's engine checks within its session set-up instead, while the connect timeout still bounds
    every read.)"""

    @event.listens_for(eng, "connect")
    def _verify(dbapi_conn: Any, _record: Any) -> None:
        expected.check(read_identity_raw(dbapi_conn, engine=expected.engine))


def read_identity_raw(dbapi_conn: Any, *, engine: str) -> DatabaseIdentity:
    """The identity of a new DBAPI connection, in one round trip (PostgreSQL roles that may not call
    ``pg_control_system()``: two). PostgreSQL or MySQL/MariaDB."""
    if engine == "postgresql":
        return _postgresql(dbapi_conn)
    return _mysql(dbapi_conn)


def _postgresql(dbapi_conn: Any) -> DatabaseIdentity:
    # Autocommit while reading: no transaction is left open for the pool to hand out, and a refused
    # function aborts none (psycopg changes the mode locally, with no round trip, on an idle connection).
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        with dbapi_conn.cursor() as cur:
            try:
                cur.execute(QUERIES["postgresql.identity"].text)
                started, port, database, schema, system_identifier = cur.fetchone()
            except Exception as exc:
                if getattr(exc, "sqlstate", None) not in PG_NO_CONTROL_FUNCTION:
                    raise
                cur.execute(QUERIES["postgresql.postmaster"].text)
                started, port, database, schema = cur.fetchone()
                system_identifier = None
    finally:
        if not dbapi_conn.closed:
            dbapi_conn.autocommit = autocommit
    return postgresql_identity(
        started=started, port=port, database=database, schema=schema, system_identifier=system_identifier
    )


def _mysql(dbapi_conn: Any) -> DatabaseIdentity:
    # MySQL has @@server_uuid, MariaDB @@server_uid: each is an error on the other.
    mariadb = "mariadb" in str(dbapi_conn.get_server_info()).lower()
    variable = "@@server_uid" if mariadb else "@@server_uuid"
    with dbapi_conn.cursor() as cur:
        try:
            cur.execute(f"SELECT @@hostname, @@port, @@datadir, DATABASE(), {variable}")
            hostname, port, datadir, database, uid = cur.fetchone()
        except Exception as exc:
            if not exc.args or exc.args[0] != _MYSQL_UNKNOWN_VARIABLE:
                raise
            cur.execute(QUERIES["mysql.server"].text)
            (hostname, port, datadir, database), uid = cur.fetchone(), None
    return mysql_identity(
        server_uuid=None if mariadb else uid,
        server_uid=uid if mariadb else None,
        hostname=hostname,
        port=port,
        datadir=datadir,
        database=database,
    )
