"""BYODB errors: every failure of a step is either worth retrying (transient) or not (permanent).

The saga worker retries a step that raised :class:`TransientByodbError` and rejects the change
(running its compensation) on :class:`PermanentByodbError`. :func:`classify` turns the exceptions of
SQLAlchemy and of the three drivers into one of the two, using what each database says most reliably:
the SQLSTATE on PostgreSQL, the error number on MySQL/MariaDB, the result code and message on SQLite.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc


class ByodbError(Exception):
    """Base of all BYODB errors; ``str(e)`` is a complete message including the database's own words."""

    transient: bool = False

    def __init__(self, message: str, *, engine: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.engine = engine
        self.code = code

    @property
    def lock_timeout(self) -> bool:
        """Whether a statement gave up waiting for a lock another session holds."""
        return self.code in LOCK_TIMEOUT_CODES

    @property
    def statement_timeout(self) -> bool:
        """Whether a statement ran longer than its statement timeout (and was cancelled)."""
        return self.code in STATEMENT_TIMEOUT_CODES

    def __str__(self) -> str:
        return self.message


# The codes of a lock wait that timed out (PostgreSQL lock_timeout, MySQL/MariaDB lock_wait_timeout).
LOCK_TIMEOUT_CODES = frozenset({"55P03", "1205"})
# Statements cancelled for running too long (PostgreSQL statement_timeout or a cancel, MariaDB
# max_statement_time, MySQL max_execution_time).
STATEMENT_TIMEOUT_CODES = frozenset({"57014", "1969", "3024"})


class TransientByodbError(ByodbError):
    """Retrying later may succeed: connection refused or lost, lock or statement timeout, deadlock..."""

    transient = True


class PermanentByodbError(ByodbError):
    """Retrying will not help: permission denied, unsupported type, a table of another shape exists..."""


class TableThere(PermanentByodbError):
    """A table to be created is there already, whatever its shape (``create_table(refuse_existing=True)``):
    ``found`` is its name as the database spells it."""

    def __init__(self, found: str, *, engine: str) -> None:
        super().__init__(f"a table {found!r} exists already", engine=engine)
        self.found = found


# PostgreSQL: SQLSTATE classes and codes worth a retry.
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources, operator, system
_PG_TRANSIENT_CODES = frozenset(
    {
        "55P03",  # lock_not_available (lock_timeout)
        "55006",  # object_in_use
        # A concurrent worker changed the same object between our inspection and our DDL; the retry
        # inspects again and finds the step done (or a real conflict, reported as permanent then).
        "42P07",  # duplicate_table
        "42701",  # duplicate_column
        "42P01",  # undefined_table
        "42703",  # undefined_column
    }
)
_PG_PERMANENT_CODES = frozenset({"57P04"})  # database_dropped (class 57 is otherwise transient)
# Two CREATE TABLEs of one name at once: the loser fails on the unique index of the row type it also
# creates (23505 unique_violation, a class that is otherwise permanent). The same race as 42P07.
_PG_CONCURRENT_CREATE_INDEX = "pg_type_typname_nsp_index"
# Connection limits, reported without a SQLSTATE and naming the role: retry once connections free up.
_PG_TRANSIENT_CONNECT_WORDS = ("too many connections", "remaining connection slots are reserved")
# psycopg reports failures to connect without a SQLSTATE; these words mean the URL itself is wrong.
_PG_PERMANENT_CONNECT_WORDS = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
    "password",
    "invalid dsn",
    "invalid connection option",
    "role ",
)

# MySQL / MariaDB error numbers worth a retry.
_MYSQL_TRANSIENT = frozenset(
    {
        1040,  # too many connections
        1203,  # the user has more than max_user_connections active connections
        1226,  # a per-user resource limit (max_user_connections, max_queries_per_hour...) is exceeded
        1053,  # server shutdown in progress
        1205,  # lock wait timeout exceeded (also metadata locks, via lock_wait_timeout)
        1213,  # deadlock
        1317,  # query execution was interrupted
        1969,  # MariaDB: max_statement_time exceeded
        3024,  # MySQL: max_execution_time exceeded
        1927,  # MariaDB: connection was killed
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (system error)
        # concurrent change between inspection and DDL; the retry inspects again
        1050,  # table already exists
        1060,  # duplicate column name
        1051,  # unknown table (DROP)
        1091,  # can't drop; check that it exists
    }
)

_SQLITE_TRANSIENT_CODES = frozenset({5, 6, 10, 13})  # BUSY, LOCKED, IOERR, FULL
_SQLITE_TRANSIENT_WORDS = ("database is locked", "database table is locked", "interrupted", "disk i/o error")


def _engine_of(orig: BaseException) -> str | None:
    module = type(orig).__module__
    if module.startswith("psycopg"):
        return "postgresql"
    if module.startswith("pymysql") or module.startswith("MySQLdb"):
        return "mysql"
    if module.startswith("sqlite3") or isinstance(orig, sqlite3.Error):
        return "sqlite"
    return None


def _make(transient: bool, message: str, *, engine: str | None, code: str | None) -> ByodbError:
    cls = TransientByodbError if transient else PermanentByodbError
    return cls(message, engine=engine, code=code)


def _pg(orig: BaseException) -> tuple[bool, str | None, str]:
    sqlstate: str | None = getattr(orig, "sqlstate", None)
    text = str(orig).strip()
    if sqlstate is None:
        lowered = text.lower()
        if any(word in lowered for word in _PG_TRANSIENT_CONNECT_WORDS):
            return (True, None, text)
        permanent = any(word in lowered for word in _PG_PERMANENT_CONNECT_WORDS)
        return (not permanent, None, text)
    if sqlstate in _PG_PERMANENT_CODES:
        return (False, sqlstate, text)
    if sqlstate == "23505" and _PG_CONCURRENT_CREATE_INDEX in text:
        return (True, sqlstate, text)
    transient = sqlstate in _PG_TRANSIENT_CODES or sqlstate[:2] in _PG_TRANSIENT_CLASSES
    return (transient, sqlstate, text)


def _mysql(orig: BaseException) -> tuple[bool, str | None, str]:
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    errno = args[0] if args and isinstance(args[0], int) else None
    text = str(args[1]) if len(args) > 1 else str(orig)
    if errno is None:
        # pymysql raises InterfaceError(0, "") on a closed connection, OperationalError for network trouble.
        transient = type(orig).__name__ in {"OperationalError", "InterfaceError"}
        return (transient, None, text or type(orig).__name__)
    return (errno in _MYSQL_TRANSIENT, str(errno), text)


def _sqlite(orig: BaseException) -> tuple[bool, str | None, str]:
    text = str(orig)
    code = getattr(orig, "sqlite_errorcode", None)
    name: str | None = getattr(orig, "sqlite_errorname", None)
    lowered = text.lower()
    transient = any(word in lowered for word in _SQLITE_TRANSIENT_WORDS)
    if isinstance(code, int) and (code & 0xFF) in _SQLITE_TRANSIENT_CODES:
        transient = True
    return (transient, name, text)


def classify(exc: BaseException, *, context: str | None = None) -> ByodbError:
    """Map an exception raised while talking to a BYODB to a transient or permanent :class:`ByodbError`.

    ``context`` (what was being done, e.g. ``"create table 'users'"``) is put in front of the message.
    """
    if isinstance(exc, ByodbError):
        return exc
    prefix = f"{context}: " if context else ""
    orig: BaseException = exc
    invalidated = False
    if isinstance(exc, sa_exc.DBAPIError):
        invalidated = exc.connection_invalidated
        if exc.orig is not None:
            orig = exc.orig
    engine = _engine_of(orig)
    if engine == "postgresql":
        transient, code, text = _pg(orig)
    elif engine == "mysql":
        transient, code, text = _mysql(orig)
    elif engine == "sqlite":
        transient, code, text = _sqlite(orig)
    elif isinstance(exc, sa_exc.TimeoutError | TimeoutError | ConnectionError):
        # SQLAlchemy's pool timeout, or a socket-level failure outside any driver
        transient, code, text = True, None, str(exc) or type(exc).__name__
    elif isinstance(exc, sa_exc.ArgumentError | sa_exc.NoSuchModuleError):
        transient, code, text = False, None, str(exc)
    else:
        transient, code, text = False, None, f"{type(exc).__name__}: {exc}"
    transient = transient or invalidated
    where = engine or "byodb"
    kind = "transient" if transient else "permanent"
    detail = f" [{code}]" if code else ""
    message = f"{prefix}{where} error ({kind}){detail}: {text}"
    return _make(transient, message, engine=engine, code=code)
