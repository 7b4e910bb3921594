"""Building a SQLAlchemy Engine per BYODB engine, with the session settings every DDL step relies on.

* PostgreSQL (psycopg 3): connect timeout; lock and statement timeouts are set per step with
  ``SET LOCAL`` semantics (``set_config(..., true)``) inside the step's transaction.
* MySQL/MariaDB (PyMySQL): autocommit (DDL commits implicitly anyway), and on every new connection
  ``lock_wait_timeout`` (metadata locks, seconds), ``innodb_lock_wait_timeout`` (row locks) and the
  statement limit: ``max_statement_time`` on MariaDB, ``max_execution_time`` on MySQL (which only limits
  SELECTs there, so MySQL DDL is bounded by the lock timeout and the client read timeout). Until the
  session is set up, reads and writes are bounded by the connect timeout: PyMySQL reads the server's
  greeting with its read timeout, so a server that accepts connections and never answers held a
  connection attempt for the statement-long read timeout (about 95 s by default).
* PostgreSQL and MySQL/MariaDB, for a registered database: every new connection is checked to reach the
  database registered under its name (:mod:`schemasaga.byodb.verify`), one query more per connection made.
* SQLite: ``busy_timeout`` and WAL journal mode on every connection; the driver's own transaction
  handling is switched off so that a step is one ``BEGIN IMMEDIATE`` transaction (SQLite DDL is
  transactional); a progress handler interrupts a statement that outlives the statement timeout.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError
from sqlalchemy.pool import ConnectionPoolEntry

from schemasaga.byodb import verify
from schemasaga.byodb.errors import PermanentByodbError
from schemasaga.byodb.verify import Expected

DDL_OPTION = "schemasaga_ddl"
"""Execution option marking a SQLite connection that will write: its transaction begins IMMEDIATE."""


@dataclass(frozen=True)
class DdlLimits:
    lock_timeout_ms: int = 5000
    statement_timeout_ms: int = 60000
    # PostgreSQL's CONCURRENTLY statements block no writer: they may run longer (0: no limit).
    online_statement_timeout_ms: int = 0
    connect_timeout_s: int = 5
    # Threads of one database's own pool (see ByodbAdapter.run): at most this many of its operations at once.
    threads: int = 8


_DRIVERS = {
    "postgresql": ("postgresql", "postgresql+psycopg"),
    "postgresql+psycopg": ("postgresql", "postgresql+psycopg"),
    "postgres": ("postgresql", "postgresql+psycopg"),
    "mysql": ("mysql", "mysql+pymysql"),
    "mysql+pymysql": ("mysql", "mysql+pymysql"),
    "mariadb": ("mysql", "mariadb+pymysql"),
    "mariadb+pymysql": ("mysql", "mariadb+pymysql"),
    "sqlite": ("sqlite", "sqlite+pysqlite"),
    "sqlite+pysqlite": ("sqlite", "sqlite+pysqlite"),
}
SUPPORTED = "postgresql+psycopg://, mysql+pymysql:// (MySQL or MariaDB) or sqlite:///path"


def parse_url(url: str | URL) -> tuple[str, URL]:
    """The engine name ("postgresql", "mysql", "sqlite") and the URL with its supported driver."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise PermanentByodbError(f"invalid BYODB URL: {exc}") from None
    found = _DRIVERS.get(parsed.drivername)
    if found is None:
        raise PermanentByodbError(
            f"unsupported BYODB driver {parsed.drivername!r}: use {SUPPORTED}", code="driver"
        )
    engine, drivername = found
    if engine == "sqlite" and parsed.database in (None, "", ":memory:"):
        # each pooled connection would get its own empty database
        raise PermanentByodbError("an in-memory SQLite database cannot be a BYODB: give a file path")
    return engine, parsed.set(drivername=drivername)


def build_engine(engine: str, url: URL, limits: DdlLimits, *, expected: Expected | None = None) -> Engine:
    """``expected``: every new connection must reach that database (see :mod:`schemasaga.byodb.verify`)."""
    check = expected if expected is not None and expected.checks else None
    if engine == "postgresql":
        return _postgresql(url, limits, check)
    if engine == "mysql":
        return _mysql(url, limits, check)
    return _sqlite(url, limits)


# TCP keepalives: libpq has no read timeout, and the statement timeout is enforced by the server, so
# without them a step whose server vanished behind a partition (no RST ever comes) waits for the
# operating system's defaults, about two hours, with its job held. With these, the connection fails
# (a transient error, retried) about 35 s after the peer stops answering; a busy server's kernel still
# answers the probes, so a long DDL is not cut.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 4,
    "tcp_user_timeout": 35_000,  # ms: data sent but never acknowledged
}


PING_AFTER_IDLE_S = 1.0
"""A pooled connection idle for longer than this is pinged before it is used (a round trip); one used
more recently is not (a saga's steps follow one another within milliseconds)."""

_IDLE_SINCE = "schemasaga_idle_since"


def ping_when_idle(eng: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections idle longer than ``PING_AFTER_IDLE_S`` only.

    A ping that finds the server gone invalidates every pooled connection (as ``pool_pre_ping`` does:
    a restart ended them all) and the checkout gets a new one. A connection that died within that long
    of its last use fails its statement instead: the error is classified as transient and the
    step retried, as a restart between a ping and the statement always was."""

    @event.listens_for(eng, "connect")
    def _connected(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()  # just made: alive

    @event.listens_for(eng, "checkin")
    def _checked_in(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(eng, "checkout")
    def _checked_out(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is not None and time.monotonic() - since <= PING_AFTER_IDLE_S:
            return
        dialect = eng.dialect
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise InvalidatePoolError(f"ping failed: {exc}") from exc
            raise


def _postgresql(url: URL, limits: DdlLimits, expected: Expected | None) -> Engine:
    eng = create_engine(
        url,
        connect_args={
            "connect_timeout": limits.connect_timeout_s,
            "application_name": "schemasaga-byodb",
            **PG_KEEPALIVES,
        },
    )
    ping_when_idle(eng)
    if expected is not None:
        verify.install(eng, expected)
    return eng


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def _mysql(url: URL, limits: DdlLimits, expected: Expected | None) -> Engine:
    lock_s = _seconds(limits.lock_timeout_ms)
    statement_s = limits.statement_timeout_ms / 1000
    # The client gives up on a silent server (network partition) after the longest a statement may take.
    read_s = _seconds(limits.lock_timeout_ms + limits.statement_timeout_ms) + 30
    eng = create_engine(
        url,
        pool_recycle=3600,
        pool_reset_on_return=None,  # autocommit: nothing to roll back
        isolation_level="AUTOCOMMIT",
        connect_args={
            "connect_timeout": limits.connect_timeout_s,
            # The greeting, authentication and session set-up are a connection's start: connect timeout.
            "read_timeout": limits.connect_timeout_s,
            "write_timeout": limits.connect_timeout_s,
        },
    )

    @event.listens_for(eng, "connect")
    def _session(dbapi_conn: Any, _record: Any) -> None:
        mariadb = "mariadb" in str(dbapi_conn.get_server_info()).lower()
        # Integers from DdlLimits, not user input.
        limit = (
            f"max_statement_time = {statement_s:.3f}"
            if mariadb
            else f"max_execution_time = {int(limits.statement_timeout_ms)}"
        )
        with dbapi_conn.cursor() as cur:
            cur.execute(
                f"SET SESSION lock_wait_timeout = {lock_s}, innodb_lock_wait_timeout = {lock_s}, {limit}, "
                # UTC: a TIMESTAMP default is written and read back as UTC (types.default_sql)
                "time_zone = '+00:00'"
            )
        if expected is not None:
            # While reads are still bounded by the connect timeout: part of the connection's start.
            expected.check(verify.read_identity_raw(dbapi_conn, engine="mysql"))
        # Set up: from now on a read may take as long as a statement may (PyMySQL applies these at the
        # next packet; they have no public setter).
        dbapi_conn._read_timeout = read_s
        dbapi_conn._write_timeout = read_s

    ping_when_idle(eng)
    return eng


def _sqlite(url: URL, limits: DdlLimits) -> Engine:
    eng = create_engine(url, connect_args={"timeout": limits.lock_timeout_ms / 1000})

    @event.listens_for(eng, "connect")
    def _session(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below decide transactions, not the sqlite3 module's heuristics.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout = {int(limits.lock_timeout_ms)}")
        try:
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            pass  # a read-only database keeps its mode; the step itself will report why it cannot write

    @event.listens_for(eng, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so inspection and DDL see one state, and waiting for
        # another writer happens here under busy_timeout rather than half-way through a step.
        writes = conn.get_execution_options().get(DDL_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return eng


def sqlite_deadline(conn: Connection, timeout_ms: int) -> None:
    """Interrupt the SQLite statements of this connection that run past ``timeout_ms`` from now."""
    dbapi_conn = conn.connection.dbapi_connection
    deadline = time.monotonic() + timeout_ms / 1000

    def _check() -> int:
        return 1 if time.monotonic() > deadline else 0

    dbapi_conn.set_progress_handler(_check, 10_000)  # type: ignore[union-attr]


def sqlite_clear_deadline(conn: Connection) -> None:
    if not conn.invalidated and not conn.closed:
        conn.connection.dbapi_connection.set_progress_handler(None, 0)  # type: ignore[union-attr]
