"""The BYODB adapter: idempotent DDL steps on a user's PostgreSQL, MySQL/MariaDB or SQLite database.

Every step inspects the live schema first and does only what is missing, so running it twice (the job
queue delivers at least once) changes nothing the second time; it answers ``True`` when it changed
something and ``False`` when the change was already there. A step that finds something *else* in the
way (a table of another shape, a column of another type) raises :class:`PermanentByodbError`.

PostgreSQL and SQLite run each step in one transaction, so a failure half-way leaves nothing behind.
MariaDB/MySQL commit every DDL statement on its own: a step made of several statements registers an undo
for each statement done and runs them (compensation) if a later one fails.

A table is created with its columns' defaults (SQL literals rendered by the dialect, ``types.default_sql``),
a unique index for each unique column and its other indexes: on PostgreSQL and SQLite by ``CREATE
[UNIQUE] INDEX`` statements in the step's transaction, on MySQL/MariaDB inline in the one ``CREATE TABLE``.
A unique column's index is named by :func:`~schemasaga.byodb.identifiers.index_name` (any name will do:
the schema diff does not compare it).

The adapter is synchronous and thread-safe (one SQLAlchemy Engine, a connection per step). Callers on the
event loop run its methods with :meth:`ByodbAdapter.run`, in the database's own small thread pool: a
database that does not answer holds its own threads until its timeouts end, never the loop's default
executor nor another database's threads. Probes of a URL being registered each get a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Column as SaColumn
from sqlalchemy import Connection, MetaData, Table, text
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.ddl import CreateColumn, DropTable
from sqlalchemy.sql.elements import quoted_name

from schemasaga.byodb import engines, inspect
from schemasaga.byodb.blockers import find_blockers
from schemasaga.byodb.engines import DdlLimits
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, classify
from schemasaga.byodb.identifiers import index_name, validate_identifier
from schemasaga.byodb.identity import DatabaseIdentity, read_identity
from schemasaga.byodb.inspect import NotATable
from schemasaga.byodb.types import default_sql, type_for
from schemasaga.domain.changes import AddColumn, Change, DeleteTable, RemoveColumn
from schemasaga.domain.changes import CreateTable as CreateTableChange
from schemasaga.domain.columns import Column, Index, TableSchema
from schemasaga.domain.errors import InvalidDefault, UnsupportedChange
from schemasaga.domain.plan import Plan, Statement
from schemasaga.domain.schema import LiveTable, compare_column, describe, diff

__all__ = ["ByodbAdapter", "DatabaseIdentity", "DdlLimits", "index_name", "open_adapter"]

SQLITE_DROP_COLUMN = (3, 35, 0)
"""First SQLite with ``ALTER TABLE ... DROP COLUMN``: older ones are refused when a database is opened."""

BetweenHook = Callable[[str], None]
T = TypeVar("T")

# The lock a DDL statement on one table takes, in each engine's words.
_TABLE_LOCK = {
    "postgresql": "ACCESS EXCLUSIVE",
    "mysql": "exclusive metadata lock",
    "sqlite": "database write lock",
}


class _Compensations:
    """Undo actions for the statements of a step already committed (MariaDB/MySQL DDL)."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, undo: Callable[[], object]) -> None:
        self._undo.append((what, undo))

    def run(self, failure: BaseException) -> None:
        for what, undo in reversed(self._undo):
            try:
                undo()
            except Exception as exc:
                # The step stays retryable: its next run inspects and finds what is left.
                failure.add_note(f"compensation {what!r} failed too: {exc}")
        self._undo.clear()


@dataclass
class _Step:
    conn: Connection
    pg_limits: tuple[str, str] | None = None  # PostgreSQL timeouts not yet set in this transaction


class ByodbAdapter:
    """Idempotent, inspected DDL on one BYODB. Build it with :func:`open_adapter` or directly from a URL."""

    engine: str

    def __init__(
        self,
        url: str,
        *,
        limits: DdlLimits = DdlLimits(),  # noqa: B008 - frozen, so one shared default is safe
        between_statements: BetweenHook | None = None,
    ) -> None:
        """``between_statements`` is a test hook called between the statements of multi-statement steps
        (with a label such as ``"create_table:created"``); raising from it simulates a crash there."""
        self.engine, sa_url = engines.parse_url(url)
        if self.engine == "sqlite" and sqlite3.sqlite_version_info < SQLITE_DROP_COLUMN:
            raise PermanentByodbError(
                f"SQLite {sqlite3.sqlite_version} cannot drop columns; schemasaga needs SQLite 3.35 or newer",
                engine="sqlite",
            )
        self.limits = limits
        self._between = between_statements
        self._sa = engines.build_engine(self.engine, sa_url, limits)
        # This database's own threads: started on demand, ended by dispose(), started again by a later
        # call (as the Engine's connection pool is: a saga may still hold an adapter a reload replaced).
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._mariadb: bool | None = None
        # MySQL/MariaDB with lower_case_table_names=0 (Linux's default) tell "Users" from "users".
        self._mysql_tables_fold_case: bool | None = None
        self._pg_limits = (f"{int(limits.lock_timeout_ms)}ms", f"{int(limits.statement_timeout_ms)}ms")

    # -- plumbing ---------------------------------------------------------------------------------

    def dispose(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # Work in hand finishes (bounded by the driver's timeouts); the threads end after it.
            executor.shutdown(wait=False)
        self._sa.dispose()

    async def run(self, action: Callable[..., T], /, *args: Any) -> T:
        """``action(*args)`` in this database's own threads, from the event loop."""
        call = functools.partial(contextvars.copy_context().run, action, *args)
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=max(1, self.limits.threads), thread_name_prefix="byodb"
                )
            future = self._executor.submit(call)
        return await asyncio.wrap_future(future)

    def __enter__(self) -> ByodbAdapter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dispose()

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"<ByodbAdapter {self.engine}>"

    @property
    def transactional_ddl(self) -> bool:
        return self.engine != "mysql"

    def _hook(self, label: str) -> None:
        if self._between is not None:
            self._between(label)

    @contextmanager
    def _step(self, what: str, *, ddl: bool = True) -> Iterator[_Step]:
        """A connection for one step: a transaction with the step's limits (PostgreSQL, SQLite) or an
        autocommit session (MySQL). Every failure leaves as a classified :class:`ByodbError`."""
        try:
            with self._sa.connect() as conn:
                if self.engine == "mysql":
                    if self._mariadb is None:
                        self._mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
                    if self._mysql_tables_fold_case is None:
                        folding = conn.execute(text("SELECT @@lower_case_table_names")).scalar_one()
                        self._mysql_tables_fold_case = int(folding) != 0
                    yield _Step(conn)
                    return
                if self.engine == "sqlite" and ddl:
                    conn = conn.execution_options(**{engines.DDL_OPTION: True})
                with conn.begin():
                    if self.engine == "postgresql":
                        # SET LOCAL rides on the step's first inspection (one round trip less), or is
                        # sent on its own before a DDL statement if nothing was inspected.
                        yield _Step(conn, pg_limits=self._pg_limits if ddl else None)
                    else:
                        engines.sqlite_deadline(conn, self.limits.statement_timeout_ms)
                        try:
                            yield _Step(conn)
                        finally:
                            engines.sqlite_clear_deadline(conn)
        except ByodbError:
            raise
        except Exception as exc:
            raise classify(exc, context=what) from exc

    def _inspect(self, step: _Step, name: str) -> LiveTable | None:
        limits, step.pg_limits = step.pg_limits, None
        try:
            return inspect.inspect_table(
                step.conn, engine=self.engine, mariadb=bool(self._mariadb), name=name, pg_limits=limits
            )
        except NotATable as exc:
            raise PermanentByodbError(f"{self.engine}: {exc}", engine=self.engine) from None

    def _ddl(self, step: _Step, statement: Executable) -> None:
        if step.pg_limits is not None:
            lock, statement_timeout = step.pg_limits
            step.pg_limits = None
            step.conn.execute(
                inspect.QUERIES["postgresql.limits"], {"lock": lock, "statement": statement_timeout}
            )
        step.conn.execute(statement)

    def is_table(self, live: LiveTable, name: str) -> bool:
        """Whether the live table (found by a case-insensitive look-up, so that ``Users`` is not
        created next to ``users``) is, for this engine, the table called ``name``: where the engine
        tells the two apart, a step that drops or checks an absence acts on the exact name only, and a
        re-run never drops a twin it did not make. (Columns: :meth:`LiveTable.is_column`.)"""
        if live.name == name:
            return True
        if live.name.lower() != name.lower() or self.engine == "postgresql":
            return False
        if self.engine == "mysql":
            return bool(self._mysql_tables_fold_case)
        return True  # SQLite: one name whatever its case

    def _table(self, name: str, columns: Sequence[Column] = ()) -> Table:
        """A SQLAlchemy Table whose names are always quoted by the dialect, exactly as given."""
        cols = [self._sa_column(c) for c in columns]
        return Table(quoted_name(name, quote=True), MetaData(), *cols)

    def _sa_column(self, column: Column) -> SaColumn[Any]:
        return SaColumn(
            quoted_name(column.name, quote=True),
            type_for(self.engine, column.type),
            primary_key=column.primary_key,
            # SQLite reports a PRIMARY KEY column as nullable unless NOT NULL is declared
            nullable=column.nullable and not column.primary_key,
            autoincrement=False,
        )

    def _column_sql(self, table: str, columns: Sequence[Column]) -> list[str]:
        """The columns' definitions, each default a literal rendered by the dialect (appended: ``...
        NOT NULL DEFAULT x`` is valid on every engine)."""
        dialect = self._sa.dialect
        specs = []
        for column, sa_column in zip(columns, self._table(table, columns).columns, strict=True):
            spec = str(CreateColumn(sa_column).compile(dialect=dialect))
            if column.default is not None:
                try:
                    spec += f" DEFAULT {default_sql(self.engine, column.type, column.default, dialect)}"
                except InvalidDefault as exc:
                    raise PermanentByodbError(f"column {column.name!r}: {exc}", engine=self.engine) from None
            specs.append(spec)
        return specs

    def _create_sql(self, name: str, columns: Sequence[Column], indexes: Sequence[Index]) -> list[str]:
        """The statements that create the table: one on MySQL (which commits each DDL statement), else
        ``CREATE TABLE`` then one ``CREATE INDEX`` per unique column and per index."""
        all_indexes = [*self._unique_indexes(name, columns), *indexes]
        parts = self._column_sql(name, columns)
        key = [self._quote(c.name) for c in columns if c.primary_key]
        if key:
            parts.append(f"PRIMARY KEY ({', '.join(key)})")
        if self.engine == "mysql":
            parts += [self._index_sql(name, i, inline=True) for i in all_indexes]
        statements = [f"CREATE TABLE {self._quote(name)} ({', '.join(parts)})"]
        if self.engine != "mysql":
            statements += [self._index_sql(name, i, inline=False) for i in all_indexes]
        return statements

    def _add_sql(self, table: str, column: Column) -> list[str]:
        """The statements that add the column: one on MySQL, else ``ALTER TABLE`` then the unique index."""
        (spec,) = self._column_sql(table, [column])
        unique = self._unique_indexes(table, [column])
        if self.engine == "mysql":
            clauses = [
                f"ADD COLUMN {spec}",
                *(f"ADD {self._index_sql(table, i, inline=True)}" for i in unique),
            ]
            return [f"ALTER TABLE {self._quote(table)} {', '.join(clauses)}"]
        alter = f"ALTER TABLE {self._quote(table)} ADD COLUMN {spec}"
        return [alter, *(self._index_sql(table, i, inline=False) for i in unique)]

    def _index_sql(self, table: str, index: Index, *, inline: bool) -> str:
        columns = ", ".join(self._quote(c) for c in index.columns)
        unique = "UNIQUE " if index.unique else ""
        if inline:  # MySQL: a clause of CREATE TABLE / ALTER TABLE
            return f"{unique}INDEX {self._quote(index.name)} ({columns})"
        return f"CREATE {unique}INDEX {self._quote(index.name)} ON {self._quote(table)} ({columns})"

    def _driver_sql(self, step: _Step, sql: str) -> None:
        """Run DDL built here (quoted identifiers, literals rendered by the dialect) as it is: drivers
        that format parameters (psycopg, pymysql) take ``%%`` for ``%``, which only literals can hold."""
        if self._sa.dialect.paramstyle in ("format", "pyformat"):
            sql = sql.replace("%", "%%")
        if step.pg_limits is not None:
            lock, statement_timeout = step.pg_limits
            step.pg_limits = None
            step.conn.execute(
                inspect.QUERIES["postgresql.limits"], {"lock": lock, "statement": statement_timeout}
            )
        step.conn.exec_driver_sql(sql)

    def _quote(self, name: str) -> str:
        return self._sa.dialect.identifier_preparer.quote_identifier(name)

    # -- reading ----------------------------------------------------------------------------------

    def server_version(self) -> str:
        query = {
            "postgresql": "SHOW server_version",
            "mysql": "SELECT VERSION()",
            "sqlite": "SELECT sqlite_version()",
        }[self.engine]
        with self._step("read the server version", ddl=False) as step:
            return str(step.conn.execute(text(query)).scalar_one())

    def identity(self) -> DatabaseIdentity:
        """Which physical database this is, as the server tells it (see :mod:`schemasaga.byodb.identity`)."""
        with self._step("identify the database", ddl=False) as step:
            return read_identity(step.conn, engine=self.engine)

    def ping(self) -> None:
        """Raise :class:`TransientByodbError` or :class:`PermanentByodbError` unless the database answers."""
        with self._step("ping", ddl=False) as step:
            step.conn.execute(text("SELECT 1")).scalar_one()

    def inspect_table(self, name: str) -> LiveTable | None:
        """The table as it physically exists (name compared case-insensitively), or ``None``."""
        with self._step(f"inspect table {name!r}", ddl=False) as step:
            return self._inspect(step, name)

    def list_tables(self) -> list[str]:
        with self._step("list tables", ddl=False) as step:
            return inspect.list_tables(step.conn, engine=self.engine)

    # -- steps ------------------------------------------------------------------------------------

    def _check_columns(self, table: str, columns: Sequence[Column]) -> None:
        validate_identifier(table, engine=self.engine, kind="table")
        if not columns:
            raise PermanentByodbError(f"table {table!r} needs at least one column", engine=self.engine)
        seen: set[str] = set()
        for column in columns:
            validate_identifier(column.name, engine=self.engine, kind="column")
            if column.name.lower() in seen:
                raise PermanentByodbError(
                    f"column {column.name!r} appears twice in table {table!r} (names are case-insensitive)",
                    engine=self.engine,
                )
            seen.add(column.name.lower())

    def _check_indexes(self, table: str, columns: Sequence[Column], indexes: Sequence[Index]) -> None:
        names = {c.name.lower() for c in columns}
        seen: set[str] = set()
        for index in indexes:
            validate_identifier(index.name, engine=self.engine, kind="index")
            if index.name.lower() in seen:
                raise PermanentByodbError(
                    f"index {index.name!r} appears twice in table {table!r}", engine=self.engine
                )
            seen.add(index.name.lower())
            if not index.columns:
                raise PermanentByodbError(f"index {index.name!r} has no column", engine=self.engine)
            missing = [c for c in index.columns if c.lower() not in names]
            if missing:
                raise PermanentByodbError(
                    f"index {index.name!r} is on {', '.join(missing)}, not a column of table {table!r}",
                    engine=self.engine,
                )

    def _unique_indexes(self, table: str, columns: Sequence[Column]) -> list[Index]:
        """The unique index that makes each unique column unique."""
        return [
            Index(index_name(table, (c.name,), True), (c.name,), unique=True) for c in columns if c.unique
        ]

    def create_table(self, name: str, columns: Sequence[Column], indexes: Sequence[Index] = ()) -> bool:
        """Create the table with its columns (defaults, uniqueness) and ``indexes``; ``False`` if it
        already exists with exactly this shape.

        A table of that name (in any letter case) with another shape is a :class:`PermanentByodbError`.
        """
        self._check_columns(name, columns)
        self._check_indexes(name, columns, indexes)
        schema = TableSchema(name, tuple(columns), tuple(indexes))
        what = f"create table {name!r}"
        with self._step(what) as step:
            live = self._inspect(step, name)
            if live is not None:
                differences = diff(schema, live)
                if differences:
                    raise PermanentByodbError(
                        f"{what}: {self.engine}: a table {live.name!r} already exists with another shape: "
                        f"{describe(differences)}",
                        engine=self.engine,
                    )
                return False
            statements = self._create_sql(name, columns, indexes)
            table = self._table(name)
            undo = _Compensations()
            try:
                self._driver_sql(step, statements[0])
                undo.push(f"drop table {name!r}", lambda: step.conn.execute(DropTable(table)))
                for statement in statements[1:]:
                    self._driver_sql(step, statement)
                self._hook("create_table:created")
                # Read back what the server made of it: MySQL outside strict mode silently changes
                # types it cannot take; a table we did not ask for is not left behind.
                differences = diff(schema, self._inspect(step, name))
                if differences:
                    raise PermanentByodbError(
                        f"{what}: {self.engine} did not create the table as asked: {describe(differences)}",
                        engine=self.engine,
                    )
            except BaseException as exc:
                if not self.transactional_ddl:
                    undo.run(exc)
                raise
            return True

    def add_column(self, table: str, column: Column) -> bool:
        """Add the column with its default and uniqueness; ``False`` if it is already there with the
        same type, nullability, default and uniqueness."""
        validate_identifier(table, engine=self.engine, kind="table")
        validate_identifier(column.name, engine=self.engine, kind="column")
        what = f"add column {column.name!r} to table {table!r}"
        if column.primary_key:
            raise PermanentByodbError(f"{what}: adding a primary key column is not supported")
        with self._step(what) as step:
            live = self._require(step, table, what)
            existing = live.column(column.name)
            if existing is not None:
                differences = compare_column(column, existing)
                if differences:
                    raise PermanentByodbError(
                        f"{what}: {self.engine}: column {existing.name!r} already exists, but "
                        f"{describe(differences)}",
                        engine=self.engine,
                    )
                return False
            for statement in self._add_sql(live.name, column):
                self._driver_sql(step, statement)
            return True

    def drop_column(self, table: str, column: str) -> bool:
        """Drop the column; ``False`` if it is already absent. Primary key columns cannot be dropped."""
        validate_identifier(table, engine=self.engine, kind="table")
        what = f"drop column {column!r} from table {table!r}"
        with self._step(what) as step:
            live = self._require(step, table, what)
            existing = live.column(column)
            if existing is None or not live.is_column(existing.name, column):
                return False
            if existing.primary_key:
                raise PermanentByodbError(
                    f"{what}: it is (part of) the primary key, which cannot be dropped", engine=self.engine
                )
            if len(live.columns) == 1:
                raise PermanentByodbError(f"{what}: it is the table's last column", engine=self.engine)
            self._ddl(
                step, text(f"ALTER TABLE {self._quote(live.name)} DROP COLUMN {self._quote(existing.name)}")
            )
            return True

    def drop_table(self, name: str) -> bool:
        """Drop the table; ``False`` if it is already absent."""
        validate_identifier(name, engine=self.engine, kind="table")
        what = f"drop table {name!r}"
        with self._step(what) as step:
            live = self._inspect(step, name)
            if live is None or not self.is_table(live, name):
                return False
            self._ddl(step, DropTable(self._table(live.name)))
            return True

    # -- plans ------------------------------------------------------------------------------------

    @property
    def _index_lock(self) -> str:
        return "SHARE" if self.engine == "postgresql" else _TABLE_LOCK[self.engine]

    def plan_change(self, before: TableSchema | None, after: TableSchema, change: Change) -> Plan:
        """The statements ``change`` runs here, as the steps that run it render them."""
        dialect = self._sa.dialect
        exclusive = _TABLE_LOCK[self.engine]
        match change:
            case CreateTableChange(schema=schema):
                statements = self._create_sql(schema.name, schema.columns, schema.indexes)
                return Plan(self.engine, tuple(Statement(sql, exclusive) for sql in statements))
            case AddColumn(column=column):
                assert before is not None
                first, *indexes = self._add_sql(before.name, column)
                # a unique column's index reads every row
                built = (Statement(sql, self._index_lock, scans=True) for sql in indexes)
                return Plan(self.engine, (Statement(first, exclusive), *built))
            case RemoveColumn(column=column):
                assert before is not None
                sql = f"ALTER TABLE {self._quote(before.name)} DROP COLUMN {self._quote(column.name)}"
                warnings = ("the column's values are dropped with it",)
                return Plan(
                    self.engine, (Statement(sql, exclusive, rewrites=self.engine == "sqlite"),), warnings
                )
            case DeleteTable():
                assert before is not None
                sql = str(DropTable(self._table(before.name)).compile(dialect=dialect)).strip()
                return Plan(
                    self.engine, (Statement(sql, exclusive),), ("the table's rows are dropped with it",)
                )
        raise UnsupportedChange(f"{change.kind.value} is not planned on {self.engine} yet")

    def blockers(self, table: str) -> list[dict[str, Any]]:
        """The sessions holding ``table``'s lock, to show when a step timed out waiting for it."""
        with self._step(f"find who holds table {table!r}", ddl=False) as step:
            return [b.to_dict() for b in find_blockers(step.conn, engine=self.engine, table=table)]

    def apply_plan(self, before: TableSchema, after: TableSchema, plan: Plan) -> bool:
        raise PermanentByodbError(f"{self.engine}: running plans of changes is not supported yet")

    def _require(self, step: _Step, table: str, what: str) -> LiveTable:
        live = self._inspect(step, table)
        if live is None:
            raise PermanentByodbError(
                f"{what}: {self.engine}: table {table!r} does not exist", engine=self.engine
            )
        return live


def open_adapter(url: str, *, limits: DdlLimits = DdlLimits()) -> ByodbAdapter:  # noqa: B008
    """An adapter for ``url``; the engine comes from the URL's scheme (an unknown driver is permanent)."""
    return ByodbAdapter(url, limits=limits)


def probe(url: str, *, limits: DdlLimits) -> tuple[str, DatabaseIdentity]:
    """Connect to ``url`` once: the server's version and which physical database it is (blocking).
    Every failure is a classified :class:`ByodbError`."""
    adapter = _open(url, limits)
    try:
        adapter.ping()
        return adapter.server_version(), adapter.identity()
    finally:
        adapter.dispose()


def identify(url: str, *, limits: DdlLimits) -> DatabaseIdentity:
    """Which physical database the registered database at ``url`` is (blocking)."""
    engine, parsed = engines.parse_url(url)
    if engine == "sqlite" and not Path(parsed.database or "").exists():
        # Connecting would create an empty file in its place.
        raise PermanentByodbError("its SQLite file does not exist", engine=engine)
    adapter = _open(url, limits)
    try:
        return adapter.identity()
    finally:
        adapter.dispose()


def _open(url: str, limits: DdlLimits) -> ByodbAdapter:
    try:
        return open_adapter(url, limits=limits)
    except Exception as exc:
        raise classify(exc, context="connect") from None


async def _alone(call: Callable[[], T], *, timeout: float) -> T:
    """``call()`` in a thread of its own, within ``timeout`` seconds. The thread is never shared: a URL
    that does not answer holds it until the driver's own timeouts end, and nothing else waits for it."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byodb-probe")
    try:
        future = asyncio.get_running_loop().run_in_executor(executor, contextvars.copy_context().run, call)
        return await asyncio.wait_for(future, timeout=timeout)
    finally:
        executor.shutdown(wait=False)


class Prober:
    """Probes databases by URL from the event loop, each in a thread of its own and within ``timeout``
    seconds (connecting, then a few statements: the driver's own connect timeout normally ends it first)."""

    def __init__(self, limits: DdlLimits) -> None:
        self.limits = limits
        self.timeout = float(limits.connect_timeout_s * 2 + 5)

    async def probe(self, url: str) -> tuple[str, DatabaseIdentity]:
        return await _alone(functools.partial(probe, url, limits=self.limits), timeout=self.timeout)

    async def identify(self, url: str) -> DatabaseIdentity:
        return await _alone(functools.partial(identify, url, limits=self.limits), timeout=self.timeout)
