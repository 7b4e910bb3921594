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
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Column as SaColumn
from sqlalchemy import Connection, CursorResult, MetaData, Table, TextClause, text
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.ddl import CreateColumn, DropTable
from sqlalchemy.sql.elements import quoted_name

from schemasaga.byodb import engines, inspect, planner, rowchecks
from schemasaga.byodb.blockers import find_blockers
from schemasaga.byodb.engines import DdlLimits
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, TableThere, classify
from schemasaga.byodb.identifiers import index_name, validate_identifier
from schemasaga.byodb.identity import DatabaseIdentity, read_identity
from schemasaga.byodb.inspect import NotATable
from schemasaga.byodb.types import default_sql, type_for
from schemasaga.byodb.verify import Expected
from schemasaga.domain.changes import (
    AddColumn,
    AddIndex,
    AlterColumn,
    Change,
    DeleteTable,
    DropIndex,
    RemoveColumn,
    RenameTable,
)
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

# The table the remembered column definitions are rendered on (a definition does not name its table).
_RENDERED_ON = "t"

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
        expected: Expected | None = None,
    ) -> None:
        """``between_statements`` is a test hook called between the statements of multi-statement steps
        (with a label such as ``"create_table:created"``); raising from it simulates a crash there.
        ``expected``: what every new connection must reach (a registered database's identity)."""
        self.engine, sa_url = engines.parse_url(url)
        if self.engine == "sqlite" and sqlite3.sqlite_version_info < SQLITE_DROP_COLUMN:
            raise PermanentByodbError(
                f"SQLite {sqlite3.sqlite_version} cannot drop columns; schemasaga needs SQLite 3.35 or newer",
                engine="sqlite",
            )
        self.limits = limits
        self._between = between_statements
        self._sa = engines.build_engine(self.engine, sa_url, limits, expected=expected)
        # This database's own threads: started on demand, ended by dispose(), started again by a later
        # call (as the Engine's connection pool is: a saga may still hold an adapter a reload replaced).
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._mariadb: bool | None = None
        # MySQL/MariaDB with lower_case_table_names=0 (Linux's default) tell "Users" from "users".
        self._mysql_tables_fold_case: bool | None = None
        self._pg_limits = (f"{int(limits.lock_timeout_ms)}ms", f"{int(limits.statement_timeout_ms)}ms")
        # Rendered column definitions (see _column_sql); a dict's get and set are atomic across threads.
        self._column_specs: dict[tuple[Any, ...], tuple[str, ...]] = {}

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
    def _step(self, what: str, *, ddl: bool = True, one_read: bool = False) -> Iterator[_Step]:
        """A connection for one step: a transaction with the step's limits (PostgreSQL, SQLite) or an
        autocommit session (MySQL). Every failure leaves as a classified :class:`ByodbError`.

        ``one_read``: the step is one read statement, which PostgreSQL runs outside a transaction block
        (two round trips less, BEGIN and COMMIT; a lone statement sees the same under READ COMMITTED)."""
        try:
            with self._sa.connect() as conn:
                if one_read and self.engine == "postgresql":
                    yield _Step(conn.execution_options(isolation_level="AUTOCOMMIT"))
                    return
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
        NOT NULL DEFAULT x`` is valid on every engine).

        Remembered (a few hundred, per adapter), whatever the table: a column's definition does not
        name its table, so they are rendered on a table of a fixed name, and tables of one shape (a
        creation's plan when accepted, the saga's check of that plan and its DDL, the next table of the
        same columns) render them once. The key spells each default with its type and repr, so that
        ``1``, ``1.0`` and ``True`` (equal in Python) are never taken for one another."""
        key = tuple(
            (c.name, c.type, c.nullable, type(c.default), repr(c.default), c.primary_key, c.unique)
            for c in columns
        )
        specs = self._column_specs.get(key)
        if specs is None:
            specs = self._render_columns(_RENDERED_ON, columns)
            if len(self._column_specs) >= 512:
                self._column_specs.clear()
            self._column_specs[key] = specs
        return list(specs)

    def _render_columns(self, table: str, columns: Sequence[Column]) -> tuple[str, ...]:
        """The columns' definitions as the dialect writes them in ``CREATE TABLE table``."""
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
        return tuple(specs)

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
        with self._step(f"inspect table {name!r}", ddl=False, one_read=True) as step:
            return self._inspect(step, name)

    def inspect_tables(self, names: Sequence[str]) -> list[LiveTable | PermanentByodbError | None]:
        """Each table as :meth:`inspect_table` finds it (or the :class:`PermanentByodbError` it raises, a
        view for instance), all in one step: one connection and transaction for many tables."""
        out: list[LiveTable | PermanentByodbError | None] = []
        with self._step(f"inspect {len(names)} tables", ddl=False) as step:
            if self.engine == "postgresql":  # one catalog query for them all
                for found in inspect.inspect_tables_pg(step.conn, list(names)):
                    if isinstance(found, NotATable):
                        out.append(PermanentByodbError(f"{self.engine}: {found}", engine=self.engine))
                    else:
                        out.append(found)
                return out
            for name in names:
                try:
                    out.append(self._inspect(step, name))
                except PermanentByodbError as exc:  # raised in Python: the transaction goes on
                    out.append(exc)
        return out

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

    def create_table(
        self,
        name: str,
        columns: Sequence[Column],
        indexes: Sequence[Index] = (),
        *,
        refuse_existing: bool = False,
    ) -> bool:
        """Create the table with its columns (defaults, uniqueness) and ``indexes``; ``False`` if it
        already exists with exactly this shape.

        A table of that name (in any letter case) with another shape is a :class:`PermanentByodbError`;
        with ``refuse_existing``, any table of that name is (:class:`TableThere`), found by the same
        inspection that precedes the DDL.
        """
        self._check_columns(name, columns)
        self._check_indexes(name, columns, indexes)
        schema = TableSchema(name, tuple(columns), tuple(indexes))
        what = f"create table {name!r}"
        with self._step(what) as step:
            live = self._inspect(step, name)
            if live is not None and refuse_existing:
                raise TableThere(live.name, engine=self.engine)
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
            undo = _Compensations()
            try:
                self._driver_sql(step, statements[0])
                # The SQLAlchemy table is built only if the drop runs (engines without transactional DDL).
                undo.push(f"drop table {name!r}", lambda: step.conn.execute(DropTable(self._table(name))))
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
            if self.engine == "sqlite":
                # SQLite refuses to drop a column an index names (a unique column's own index): the
                # column's single-column indexes go with it, as they do on the other engines.
                for index in live.indexes:
                    if [c.lower() for c in index.columns] == [existing.name.lower()]:
                        self._ddl(step, text(f"DROP INDEX {self._quote(index.name)}"))
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

    # -- trash ------------------------------------------------------------------------------------

    def rename_table(self, name: str, new_name: str) -> bool:
        """Rename table ``name`` to ``new_name`` (into or out of the trash); ``False`` if it has been
        renamed already (``name`` absent, ``new_name`` there). Both there, or neither: refused."""
        validate_identifier(name, engine=self.engine, kind="table")
        validate_identifier(new_name, engine=self.engine, kind="table")
        what = f"rename table {name!r} to {new_name!r}"
        with self._step(what) as step:
            source = self._inspect(step, name)
            target = self._inspect(step, new_name)
            has_source = source is not None and self.is_table(source, name)
            has_target = target is not None and self.is_table(target, new_name)
            if has_target and not has_source:
                return False
            if not has_source:
                raise PermanentByodbError(f"{what}: table {name!r} does not exist", engine=self.engine)
            if target is not None:
                raise PermanentByodbError(
                    f"{what}: a table {target.name!r} exists already", engine=self.engine
                )
            assert source is not None
            self._ddl(step, text(f"ALTER TABLE {self._quote(source.name)} RENAME TO {self._quote(new_name)}"))
            return True

    def copy_to_trash(self, table: str, column: str, key: Sequence[Column], trash: str) -> bool:
        """Copy the values of ``column``, keyed by the ``key`` columns, into the trash table ``trash``
        (made here); ``False`` when the column is gone already (copied by an earlier run). A re-run
        copies again from scratch."""
        validate_identifier(table, engine=self.engine, kind="table")
        validate_identifier(trash, engine=self.engine, kind="table")
        what = f"copy column {column!r} of table {table!r} to the trash"
        with self._step(what) as step:
            live = self._require(step, table, what)
            existing = live.column(column)
            if existing is None or not live.is_column(existing.name, column):
                return False
            if existing.type is None:
                raise PermanentByodbError(f"{what}: its type is not one schemasaga manages")
            value = Column(existing.name, existing.type, nullable=True)
            keys = [replace(k, nullable=False, default=None, unique=False, primary_key=True) for k in key]
            if self._inspect(step, trash) is None:
                for statement in self._create_sql(trash, [*keys, value], ()):
                    self._driver_sql(step, statement)
            names = ", ".join(self._quote(c.name) for c in [*keys, value])
            self._ddl(step, text(f"DELETE FROM {self._quote(trash)}"))
            self._ddl(
                step,
                text(
                    f"INSERT INTO {self._quote(trash)} ({names}) SELECT {names} FROM {self._quote(live.name)}"
                ),
            )
            return True

    def fill_from_trash(self, table: str, column: str, source: str, key: Sequence[Column], trash: str) -> int:
        """Set ``column`` of every row of ``table`` whose key is in the trash table to its value there
        (column ``source``); the rows updated. Running it again sets the same values."""
        validate_identifier(table, engine=self.engine, kind="table")
        validate_identifier(trash, engine=self.engine, kind="table")
        what = f"fill column {column!r} of table {table!r} from the trash"
        with self._step(what) as step:
            live = self._require(step, table, what)
            if self._inspect(step, trash) is None:
                raise PermanentByodbError(f"{what}: the trash table {trash!r} is gone", engine=self.engine)
            t, s = self._quote(live.name), self._quote(trash)
            match = " AND ".join(f"{s}.{self._quote(k.name)} = {t}.{self._quote(k.name)}" for k in key)
            sql = (
                f"UPDATE {t} SET {self._quote(column)} = (SELECT {s}.{self._quote(source)} FROM {s} "
                f"WHERE {match}) WHERE EXISTS (SELECT 1 FROM {s} WHERE {match})"
            )
            if step.pg_limits is not None:
                self._ddl(step, text("SELECT 1"))
            return int(step.conn.execute(text(sql)).rowcount)

    def count_rows(self, name: str) -> int | None:
        """The rows of table ``name`` (``None``: no such table)."""
        validate_identifier(name, engine=self.engine, kind="table")
        with self._step(f"count the rows of {name!r}", ddl=False) as step:
            if self._inspect(step, name) is None:
                return None
            return int(step.conn.execute(text(f"SELECT count(*) FROM {self._quote(name)}")).scalar_one())

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
                for index in schema.indexes:
                    planner.check_index(self.engine, schema, index)
                statements = self._create_sql(schema.name, schema.columns, schema.indexes)
                return Plan(self.engine, tuple(Statement(sql, exclusive) for sql in statements))
            case AddColumn(column=column):
                assert before is not None
                first, *indexes = self._add_sql(before.name, column)
                # a unique column's index reads every row
                built = (Statement(sql, self._index_lock, scans=True) for sql in indexes)
                return Plan(self.engine, (Statement(first, exclusive), *built))
            case RemoveColumn(column=column, trash=trash, key=key):
                assert before is not None
                table = self._quote(before.name)
                sql = f"ALTER TABLE {table} DROP COLUMN {self._quote(column.name)}"
                drop = Statement(sql, exclusive, rewrites=self.engine == "sqlite")
                if not trash:
                    return Plan(self.engine, (drop,), ("the column's values are dropped with it",))
                keys = [replace(k, nullable=False, default=None, unique=False, primary_key=True) for k in key]
                value = Column(column.name, column.type)
                names = ", ".join(self._quote(c.name) for c in [*keys, value])
                copy = [
                    *self._create_sql(trash, [*keys, value], ()),
                    f"INSERT INTO {self._quote(trash)} ({names}) SELECT {names} FROM {table}",
                ]
                note = f"the column's values are kept in the trash table {trash!r}, keyed by the primary key"
                return Plan(self.engine, (*(Statement(c, "SHARE", scans=True) for c in copy), drop), (note,))
            case DeleteTable(trash=trash):
                assert before is not None
                if trash:
                    sql = f"ALTER TABLE {self._quote(before.name)} RENAME TO {self._quote(trash)}"
                    note = f"the table and its rows are kept in the trash as {trash!r}"
                    return Plan(self.engine, (Statement(sql, exclusive),), (note,))
                sql = str(DropTable(self._table(before.name)).compile(dialect=dialect)).strip()
                return Plan(
                    self.engine, (Statement(sql, exclusive),), ("the table's rows are dropped with it",)
                )
            case RenameTable() | AlterColumn() | AddIndex() | DropIndex():
                assert before is not None
                # the live index names where the plan names existing indexes: a table or column renamed
                # since an index was made keeps its name
                live = (
                    self.inspect_table(before.name)
                    if planner.names_live_indexes(self.engine, before, change)
                    else None
                )
                return planner.plan(self.engine, before, after, change, live=live)
        raise UnsupportedChange(f"{change.kind.value} is not planned on {self.engine} yet")

    def blockers(self, table: str) -> list[dict[str, Any]]:
        """The sessions holding ``table``'s lock, to show when a step timed out waiting for it."""
        with self._step(f"find who holds table {table!r}", ddl=False) as step:
            return [b.to_dict() for b in find_blockers(step.conn, engine=self.engine, table=table)]

    def _require(self, step: _Step, table: str, what: str) -> LiveTable:
        live = self._inspect(step, table)
        if live is None:
            raise PermanentByodbError(
                f"{what}: {self.engine}: table {table!r} does not exist", engine=self.engine
            )
        return live

    # -- planned changes (byodb.planner) ---------------------------------------------------------

    def _schema_differences(self, step: _Step, live: LiveTable | None, schema: TableSchema) -> list[str]:
        """How the live table differs from ``schema``, in words (the one diff); an invalid index left by a
        failed CONCURRENTLY build counts as absent: the plan drops it before building it again."""
        if live is not None:
            live = replace(live, indexes=tuple(i for i in live.indexes if i.valid))
        return [d.describe() for d in diff(schema, live)]

    def _find(self, step: _Step, before: TableSchema, after: TableSchema) -> LiveTable | None:
        live = self._inspect(step, before.name)
        if live is None and after.name != before.name:
            live = self._inspect(step, after.name)
        return live

    def _pg_read_limits(self, step: _Step) -> None:
        if self.engine == "postgresql":
            lock, statement = self._pg_limits
            step.conn.execute(inspect.QUERIES["postgresql.limits"], {"lock": lock, "statement": statement})

    def check_rows(
        self, before: TableSchema, after: TableSchema, change: Change
    ) -> rowchecks.RowCheck | None:
        """The rows of the live table that ``change`` could not keep (NULLs where NOT NULL is asked,
        duplicates where uniqueness is, values that do not fit a new type): how many, up to five of
        their primary keys; ``None`` when every row fits. Read-only, within the step's timeouts.

        A name the change would take that something else holds (another table's, another relation's
        index name), or a trigger a SQLite rebuild would drop, is a :class:`PermanentByodbError`, as
        when the plan runs: the change is refused before it is accepted, not rejected after."""
        what = f"check table {before.name!r} for the {change.kind.value} change"
        with self._step(what, ddl=False) as step:
            self._pg_read_limits(step)
            live = self._require(step, before.name, what)
            self._check_names(step, live, before, after, change, what)
            return self._check_rows(step, live, before, after, change)

    def _check_rows(
        self, step: _Step, live: LiveTable, before: TableSchema, after: TableSchema, change: Change
    ) -> rowchecks.RowCheck | None:
        q = self._quote
        checks: list[tuple[str, str]] = []  # (condition on a row, why it does not fit)
        if isinstance(change, AlterColumn):
            old, new = before.column(change.name), change.column
            found = live.column(change.name)
            if old is None or found is None:
                return None
            col = q(found.name)
            if old.type != new.type:
                predicate = rowchecks.incompatible_predicate(self.engine, old.type, new.type, col)
                if predicate == rowchecks.CLIENT_SIDE_JSON:
                    json_check = self._json_rows(step, live, before, found.name)
                    if json_check is not None:
                        return json_check
                elif predicate is not None:
                    checks.append(
                        (
                            f"{col} IS NOT NULL AND ({predicate})",
                            f"with a value of {found.name!r} that is no {new.type.value}",
                        )
                    )
            if old.effective_nullable and not new.effective_nullable:
                checks.append((f"{col} IS NULL", f"with NULL in {found.name!r}"))
            if new.unique and not old.unique:
                # as the values will be: the type check before it made sure that every one converts
                value = rowchecks.converted(self.engine, old.type, new.type, col)
                checks.append(
                    (self._duplicates(live, (found.name,), (value,)), f"sharing a value of {found.name!r}")
                )
        elif isinstance(change, AddIndex) and change.index.unique:
            names = tuple((live.column(c) or _missing(c)).name for c in change.index.columns)
            checks.append((self._duplicates(live, names), f"sharing values of {list(names)}"))
        for condition, reason in checks:
            found_rows = self._offending(step, live, before, condition)
            if found_rows is not None:
                count, keys = found_rows
                return rowchecks.RowCheck(count, keys, reason)
        return None

    def _duplicates(self, live: LiveTable, columns: Sequence[str], values: Sequence[str] = ()) -> str:
        """A condition true for the rows whose ``columns`` (as the SQL ``values``, when given) are all
        non-NULL and equal to another row's."""
        q = self._quote
        exprs = ", ".join(values or [q(c) for c in columns])
        not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in columns)
        table = q(live.name)
        grouped = f"SELECT {exprs} FROM {table} WHERE {not_null} GROUP BY {exprs} HAVING count(*) > 1"
        if self.engine == "mysql":
            # MySQL cannot read the table a subquery of IN reads unless it is materialised first
            grouped = f"SELECT * FROM ({grouped}) AS duplicates"
        return f"({exprs}) IN ({grouped})"

    def _pk(self, live: LiveTable, before: TableSchema) -> list[str]:
        return [(live.column(c) or _missing(c)).name for c in before.primary_key]

    def _offending(
        self, step: _Step, live: LiveTable, before: TableSchema, condition: str
    ) -> tuple[int, tuple[Any, ...]] | None:
        table = self._quote(live.name)
        count = int(_verbatim(step.conn, f"SELECT count(*) FROM {table} WHERE {condition}").scalar_one())
        if count == 0:
            return None
        pk = self._pk(live, before)
        keys: tuple[Any, ...] = ()
        if pk:
            cols = ", ".join(self._quote(c) for c in pk)
            rows = _verbatim(
                step.conn, f"SELECT {cols} FROM {table} WHERE {condition} ORDER BY {cols} LIMIT 5"
            ).all()
            keys = tuple(r[0] if len(pk) == 1 else tuple(r) for r in rows)
        return count, keys

    def _json_rows(
        self, step: _Step, live: LiveTable, before: TableSchema, column: str
    ) -> rowchecks.RowCheck | None:
        """Values that are no JSON, read and parsed here (PostgreSQL 15 cannot test them in SQL)."""
        pk = self._pk(live, before)
        cols = ", ".join(self._quote(c) for c in (*pk, column))
        sql = f"SELECT {cols} FROM {self._quote(live.name)} WHERE {self._quote(column)} IS NOT NULL"
        if pk:
            sql += f" ORDER BY {', '.join(self._quote(c) for c in pk)}"
        count, keys = 0, list[Any]()
        for row in _verbatim(step.conn, sql, yield_per=1000):
            if _is_json(row[-1]):
                continue
            count += 1
            if len(keys) < 5 and pk:
                keys.append(row[0] if len(pk) == 1 else tuple(row[: len(pk)]))
        if count == 0:
            return None
        return rowchecks.RowCheck(count, tuple(keys), f"with a value of {column!r} that is no json")

    def live_state(self, before: TableSchema, after: TableSchema, change: Change | None = None) -> str:
        """Where the live table stands for a change from ``before`` to ``after``: ``"after"`` (done),
        ``"middle"`` (PostgreSQL: its transaction ran, its CONCURRENTLY statements did not), ``"before"``,
        or ``"neither"``. A saga can ask it before comparing a fresh plan with the recorded one: a plan
        written once the change is done may name indexes otherwise (they are gone or renamed)."""
        change = change or planner.change_between(before, after)
        middle = planner.middle_schema(before, after, change)
        with self._step(f"inspect table {before.name!r}", ddl=False) as step:
            live = self._find(step, before, after)
            if not self._schema_differences(step, live, after):
                return "after"
            if (
                self.engine == "postgresql"
                and middle != before
                and not self._schema_differences(step, live, middle)
            ):
                return "middle"
            return "neither" if self._schema_differences(step, live, before) else "before"

    def apply_plan(
        self, before: TableSchema, after: TableSchema, plan: Plan, *, change: Change | None = None
    ) -> bool:
        """Run ``plan`` (written by :func:`~schemasaga.byodb.planner.plan` for ``before`` to ``after``):
        ``False`` if the live table is ``after`` already; a :class:`PermanentByodbError` if it is neither
        ``before`` nor ``after``, or if rows do not fit the change (checked before any DDL). Exactly the
        plan's statements run, in order: the transactional ones in one transaction (PostgreSQL, SQLite),
        then the others (PostgreSQL's CONCURRENTLY) one by one; the result is verified against ``after``.

        A PostgreSQL plan whose transaction committed but whose CONCURRENTLY statements failed leaves the
        table "in the middle" (:func:`~schemasaga.byodb.planner.middle_schema`): the next run finds it
        there and runs only those statements, after dropping the invalid index a failed build left."""
        if plan.engine != self.engine:
            raise PermanentByodbError(f"a {plan.engine} plan cannot run on {self.engine}", engine=self.engine)
        change = change or planner.change_between(before, after)
        middle = planner.middle_schema(before, after, change)
        first = [s for s in plan.statements if s.transactional]
        later = [s for s in plan.statements if not s.transactional]
        what = f"apply the {change.kind.value} plan to table {before.name!r}"
        with self._step(what) as step:
            live = self._find(step, before, after)
            done = not self._schema_differences(step, live, after)
            in_middle = (
                not done
                and bool(later)
                and middle != before
                and not self._schema_differences(step, live, middle)
            )
            if not done:
                start, start_change = (
                    (middle, planner.change_between(middle, after)) if in_middle else (before, change)
                )
                differences = self._schema_differences(step, live, start)
                if differences:
                    raise PermanentByodbError(
                        f"{what}: {self.engine}: the table is neither as before nor as after the change: "
                        f"{'; '.join(differences)}",
                        engine=self.engine,
                    )
                assert live is not None  # (no differences)
                self._check_names(step, live, start, after, start_change, what)
                rows = self._check_rows(step, live, start, after, start_change)
                if rows is not None:
                    raise PermanentByodbError(
                        f"{what}: {self.engine}: {rows.message}; nothing was changed", engine=self.engine
                    )
            if not done and not in_middle:
                try:
                    for statement in first:
                        self._hook(f"apply_plan:{statement.sql}")
                        # verbatim: no bind parameters are parsed out (the step's limits are set already)
                        _verbatim(step.conn, statement.sql)
                except BaseException as exc:
                    if any(s.sql == planner.LEGACY_ALTER_OFF for s in first):
                        # a PRAGMA outlives the transaction: the pooled connection gets its default back
                        _verbatim(step.conn, planner.LEGACY_ALTER_OFF)
                    if isinstance(exc, Exception):
                        raise self._held_too_long(classify(exc, context=what), first) from exc
                    raise
                if self.transactional_ddl and first:
                    # still inside the transaction: a wrong result rolls back
                    self._verify(step, before, after, middle if later else after, what)
        # (CONCURRENTLY waits for the transactions older than it: the step's must be over)
        if done:
            self._drop_invalid(later, what)
            return False
        if later:
            try:
                self._run_outside_transaction(later, what)
            except PermanentByodbError as exc:
                if first:
                    self._undo(before, middle, exc, what)
                raise
        with self._step(f"verify {what}", ddl=False) as step:
            self._verify(step, before, after, after, what)
        return True

    def _check_names(
        self, step: _Step, live: LiveTable, before: TableSchema, after: TableSchema, change: Change, what: str
    ) -> None:
        """Refuse at once (rather than fail and retry) a name the change would take that something else
        holds: another table's, for a rename; another index's or relation's, for a new index on PostgreSQL
        and SQLite, where index names are shared by the whole schema or database."""
        taken: str | None = None
        if isinstance(change, RenameTable):
            other = self._inspect(step, after.name)
            if other is not None and other.name != live.name:
                taken = f"a table {other.name!r} exists already"
        elif self.engine != "mysql":
            for name in planner.created_index_names(before, after, change):
                query = _EXTRAS[f"{self.engine}.relation"]
                found = step.conn.execute(query, {"name": name}).first()
                if found is not None:
                    taken = f"the name {name!r} is taken by {found[0]} {found[1]!r}"
        if taken is not None:
            raise PermanentByodbError(f"{what}: {self.engine}: {taken}", engine=self.engine)
        if self.engine == "sqlite" and planner.rebuilds(before, change):
            triggers = [str(r[0]) for r in step.conn.execute(_EXTRAS["sqlite.triggers"], {"name": live.name})]
            if triggers:
                raise PermanentByodbError(
                    f"{what}: sqlite: the change rebuilds the table, which would drop its trigger(s) "
                    f"{', '.join(map(repr, triggers))}",
                    engine=self.engine,
                )

    def _undo(self, before: TableSchema, middle: TableSchema, failure: ByodbError, what: str) -> None:
        """Take the table from ``middle`` back to ``before`` after the plan's CONCURRENTLY part failed for
        good (a duplicate written after the check, say): the change is refused as a whole, not half done.
        What cannot be undone is said in ``failure``'s notes (and the table stays in the middle)."""
        try:
            back = planner.change_between(middle, before)
            reverse = planner.plan(self.engine, middle, before, back)
            if not all(s.transactional for s in reverse.statements):
                raise PermanentByodbError("the way back is not one transaction")
            with self._step(f"undo {what}") as step:
                live = self._find(step, middle, before)
                differences = self._schema_differences(step, live, middle)
                if differences:
                    raise PermanentByodbError(f"the table moved on meanwhile: {'; '.join(differences)}")
                for statement in reverse.statements:
                    _verbatim(step.conn, statement.sql)
                self._verify(step, middle, before, before, f"undo {what}")
        except Exception as exc:
            failure.add_note(f"undoing its transaction failed, the table is left between the two: {exc}")
            return
        failure.add_note("its transaction was undone: the table is as it was before the change")
        failure.message += " (undone: the table is as before)"

    def _verify(
        self, step: _Step, before: TableSchema, after: TableSchema, expected: TableSchema, what: str
    ) -> None:
        live = self._find(step, before, after)
        differences = self._schema_differences(step, live, expected)
        if differences:
            raise PermanentByodbError(
                f"{what}: {self.engine}: the table is not as planned afterwards: {'; '.join(differences)}",
                engine=self.engine,
            )

    @contextmanager
    def _autocommit(self) -> Iterator[Connection]:
        """A PostgreSQL session outside any transaction, with the step's lock and statement timeouts."""
        with self._sa.connect() as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            lock, statement_timeout = self._pg_limits
            conn.execute(_EXTRAS["postgresql.session_limits"], {"lock": lock, "statement": statement_timeout})
            try:
                yield conn
            finally:
                if not conn.invalidated:
                    conn.exec_driver_sql("RESET lock_timeout")
                    conn.exec_driver_sql("RESET statement_timeout")

    def _held_too_long(self, failure: ByodbError, statements: Sequence[Statement]) -> ByodbError:
        """A statement timeout on a statement that rewrites or scans the table is final: it held its
        lock (writers waited) for the whole timeout, and a retry would hold it as long again."""
        heavy = [s for s in statements if s.rewrites or s.scans]
        if not failure.statement_timeout or not heavy:
            return failure
        error = PermanentByodbError(
            f"{failure.message}; it rewrites or reads every row of the table and ran longer than the "
            f"statement timeout ({self.limits.statement_timeout_ms} ms), blocking writers all that time: "
            "not retried, nothing was changed (raise SCHEMASAGA_DDL_STATEMENT_TIMEOUT_MS for a table "
            "this size)",
            engine=self.engine,
            code=failure.code,
        )
        return error

    def _run_outside_transaction(self, statements: Sequence[Statement], what: str) -> None:
        """PostgreSQL's CONCURRENTLY statements, each on its own; an invalid index a failed build leaves
        behind is dropped (here, and before the next attempt). They block no writer, so they run under
        the online statement timeout (none by default) rather than the step's."""
        self._drop_invalid(statements, what)
        try:
            with self._autocommit() as conn:
                online = int(self.limits.online_statement_timeout_ms)
                conn.exec_driver_sql(f"SET statement_timeout = {online}")  # an int of our settings
                for statement in statements:
                    self._hook(f"apply_plan:{statement.sql}")
                    _verbatim(conn, statement.sql)
        except Exception as exc:
            failure = classify(exc, context=what)
            try:
                self._drop_invalid(statements, what)
            except ByodbError as cleanup:
                # (it waits for the same lockers the build did) the next attempt drops it first
                failure.add_note(f"the invalid index it left is dropped at the next attempt: {cleanup}")
            raise failure from exc

    def _drop_invalid(self, statements: Sequence[Statement], what: str) -> None:
        """Drop the invalid indexes (left by failed CONCURRENTLY builds) that ``statements`` name."""
        if self.engine != "postgresql" or not statements:
            return
        try:
            with self._autocommit() as conn:
                invalid = [str(r[0]) for r in conn.execute(_EXTRAS["postgresql.invalid_indexes"])]
                for name in invalid:
                    quoted = self._quote(name)
                    if any(quoted in s.sql for s in statements):
                        conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
        except Exception as exc:
            raise classify(exc, context=f"{what}: drop an invalid index") from exc


def open_adapter(
    url: str,
    *,
    limits: DdlLimits = DdlLimits(),  # noqa: B008
    expected: Expected | None = None,
) -> ByodbAdapter:
    """An adapter for ``url``; the engine comes from the URL's scheme (an unknown driver is permanent).
    ``expected``: the registered database every new connection must reach (:mod:`.verify`)."""
    return ByodbAdapter(url, limits=limits, expected=expected)


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


_EXTRAS: dict[str, TextClause] = {
    "postgresql.invalid_indexes": text(
        """
        SELECT ic.relname FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
        WHERE NOT x.indisvalid
          AND ic.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
        """
    ),
    "postgresql.session_limits": text(
        "SELECT set_config('lock_timeout', :lock, false), set_config('statement_timeout', :statement, false)"
    ),
    # what holds a name an index is to take (index names are per schema / per database there)
    "postgresql.relation": text(
        """
        SELECT CASE WHEN c.relkind IN ('i', 'I') THEN 'an index of'
                    WHEN c.relkind IN ('r', 'p') THEN 'the table' ELSE 'the relation' END,
               coalesce(t.relname, c.relname)
        FROM pg_catalog.pg_class c
        LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
        LEFT JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
        WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
          AND c.relname = :name
          AND coalesce(x.indisvalid, true)  -- a failed CONCURRENTLY build's leftover is dropped first
        """
    ),
    "sqlite.triggers": text(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :name COLLATE NOCASE"
    ),
    "sqlite.relation": text(
        """
        SELECT CASE type WHEN 'index' THEN 'an index of' ELSE 'the ' || type END, tbl_name
        FROM sqlite_master WHERE name = :name COLLATE NOCASE
        """
    ),
}


def _verbatim(conn: Connection, sql: str, **options: Any) -> CursorResult[Any]:
    """Run generated SQL as it is: no parameters, so a '%' or ':' in a literal is just that (the options
    apply to this statement only; ``Connection.execution_options`` would change the connection)."""
    return conn.exec_driver_sql(sql, execution_options={"no_parameters": True, **options})


def _missing(name: str) -> NoReturn:
    raise PermanentByodbError(f"column {name!r} does not exist")


def _is_json(value: Any) -> bool:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        json.loads(str(value), parse_constant=refuse)
    except ValueError:
        return False
    return "\\u0000" not in str(value)  # jsonb refuses the NUL character
