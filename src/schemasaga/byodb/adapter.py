"""The BYODB adapter: idempotent DDL steps on a user's PostgreSQL, MySQL/MariaDB or SQLite database.

Every step inspects the live schema first and does only what is missing, so running it twice (the job
queue delivers at least once) changes nothing the second time; it answers ``True`` when it changed
something and ``False`` when the change was already there. A step that finds something *else* in the
way (a table of another shape, a column of another type) raises :class:`PermanentByodbError`.

PostgreSQL and SQLite run each step in one transaction, so a failure half-way leaves nothing behind.
MariaDB/MySQL commit every DDL statement on its own: a step made of several statements registers an undo
for each statement done and runs them (compensation) if a later one fails.

The adapter is synchronous and thread-safe (one SQLAlchemy Engine, a connection per step); the worker
calls it from a thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column as SaColumn
from sqlalchemy import Connection, MetaData, Table, text
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.ddl import CreateColumn, CreateTable, DropTable
from sqlalchemy.sql.elements import quoted_name

from schemasaga.byodb import catalog, engines
from schemasaga.byodb.catalog import LiveColumn, LiveTable, NotATable
from schemasaga.byodb.engines import DdlLimits
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, classify
from schemasaga.byodb.identifiers import validate_identifier
from schemasaga.byodb.identity import DatabaseIdentity, read_identity
from schemasaga.byodb.types import type_for
from schemasaga.domain.columns import Column

__all__ = ["ByodbAdapter", "DatabaseIdentity", "DdlLimits", "LiveColumn", "LiveTable", "open_adapter"]

SQLITE_DROP_COLUMN = (3, 35, 0)
"""First SQLite with ``ALTER TABLE ... DROP COLUMN``; older ones rebuild the table (Alembic batch)."""

BetweenHook = Callable[[str], None]


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
        sqlite_batch_drop: bool | None = None,
    ) -> None:
        """``between_statements`` is a test hook called between the statements of multi-statement steps
        (with a label such as ``"create_table:created"``); raising from it simulates a crash there.
        ``sqlite_batch_drop`` forces (True) or forbids (False) Alembic's table rebuild to drop SQLite
        columns; by default it is used only when SQLite is older than 3.35."""
        self.engine, sa_url = engines.parse_url(url)
        self.limits = limits
        self._between = between_statements
        self._sqlite_batch_drop = (
            sqlite_batch_drop
            if sqlite_batch_drop is not None
            else sqlite3.sqlite_version_info < SQLITE_DROP_COLUMN
        )
        self._sa = engines.build_engine(self.engine, sa_url, limits)
        self._mariadb: bool | None = None
        # MySQL/MariaDB with lower_case_table_names=0 (Linux's default) tell "Users" from "users".
        self._mysql_tables_fold_case: bool | None = None
        self._pg_limits = (f"{int(limits.lock_timeout_ms)}ms", f"{int(limits.statement_timeout_ms)}ms")

    # -- plumbing ---------------------------------------------------------------------------------

    def dispose(self) -> None:
        self._sa.dispose()

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
            return catalog.inspect_table(
                step.conn, engine=self.engine, mariadb=bool(self._mariadb), name=name, pg_limits=limits
            )
        except NotATable as exc:
            raise PermanentByodbError(f"{self.engine}: {exc}", engine=self.engine) from None

    def _ddl(self, step: _Step, statement: Executable) -> None:
        if step.pg_limits is not None:
            lock, statement_timeout = step.pg_limits
            step.pg_limits = None
            step.conn.execute(
                catalog.QUERIES["postgresql.limits"], {"lock": lock, "statement": statement_timeout}
            )
        step.conn.execute(statement)

    def same_name(self, live: str, wanted: str, *, kind: str) -> bool:
        """Whether the live table or column ``live`` is the one called ``wanted``: inspection finds
        names regardless of case (so that ``Users`` is not created next to ``users``), but where the
        engine tells them apart a step that drops or checks an absence acts on the exact name only: a
        re-run must never drop a twin it did not make."""
        if live == wanted:
            return True
        if live.lower() != wanted.lower():
            return False
        if self.engine == "postgresql":
            return False
        if self.engine == "mysql" and kind == "table":
            return bool(self._mysql_tables_fold_case)
        return True  # SQLite names, MySQL column names: one name whatever its case

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
            # a literal, rendered and escaped by the dialect, never SQL text
            server_default=column.default,
            autoincrement=False,
        )

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
            return catalog.list_tables(step.conn, engine=self.engine)

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

    def create_table(self, name: str, columns: Sequence[Column]) -> bool:
        """Create the table; ``False`` if it already exists with exactly this shape.

        A table of that name (in any letter case) with another shape is a :class:`PermanentByodbError`.
        """
        self._check_columns(name, columns)
        what = f"create table {name!r}"
        with self._step(what) as step:
            live = self._inspect(step, name)
            if live is not None:
                problem = shape_difference(live, name, columns)
                if problem:
                    raise PermanentByodbError(
                        f"{what}: {self.engine}: a table {live.name!r} already exists with another shape: "
                        f"{problem}",
                        engine=self.engine,
                    )
                return False
            table = self._table(name, columns)
            undo = _Compensations()
            try:
                self._ddl(step, CreateTable(table))
                undo.push(f"drop table {name!r}", lambda: step.conn.execute(DropTable(table)))
                self._hook("create_table:created")
                # Read back what the server made of it: MySQL outside strict mode silently changes
                # types it cannot take; a table we did not ask for is not left behind.
                created = self._inspect(step, name)
                problem = "it is missing" if created is None else shape_difference(created, name, columns)
                if problem:
                    raise PermanentByodbError(
                        f"{what}: {self.engine} did not create the table as asked: {problem}",
                        engine=self.engine,
                    )
            except BaseException as exc:
                if not self.transactional_ddl:
                    undo.run(exc)
                raise
            return True

    def add_column(self, table: str, column: Column) -> bool:
        """Add the column; ``False`` if it is already there with the same type and nullability."""
        validate_identifier(table, engine=self.engine, kind="table")
        validate_identifier(column.name, engine=self.engine, kind="column")
        what = f"add column {column.name!r} to table {table!r}"
        if column.primary_key:
            raise PermanentByodbError(f"{what}: adding a primary key column is not supported")
        with self._step(what) as step:
            live = self._require(step, table, what)
            existing = live.column(column.name)
            if existing is not None:
                problem = column_difference(existing, column)
                if problem:
                    raise PermanentByodbError(
                        f"{what}: {self.engine}: column {existing.name!r} already exists with {problem}",
                        engine=self.engine,
                    )
                return False
            spec = CreateColumn(self._sa_column(column)).compile(dialect=step.conn.dialect)
            self._ddl(step, text(f"ALTER TABLE {self._quote(live.name)} ADD COLUMN {spec}"))
            return True

    def drop_column(self, table: str, column: str) -> bool:
        """Drop the column; ``False`` if it is already absent. Primary key columns cannot be dropped."""
        validate_identifier(table, engine=self.engine, kind="table")
        what = f"drop column {column!r} from table {table!r}"
        with self._step(what) as step:
            live = self._require(step, table, what)
            existing = live.column(column)
            if existing is None or not self.same_name(existing.name, column, kind="column"):
                return False
            if existing.primary_key:
                raise PermanentByodbError(
                    f"{what}: it is (part of) the primary key, which cannot be dropped", engine=self.engine
                )
            if len(live.columns) == 1:
                raise PermanentByodbError(f"{what}: it is the table's last column", engine=self.engine)
            if self.engine == "sqlite" and self._sqlite_batch_drop:
                self._sqlite_rebuild_without(step.conn, live.name, existing.name)
            else:
                self._ddl(
                    step,
                    text(f"ALTER TABLE {self._quote(live.name)} DROP COLUMN {self._quote(existing.name)}"),
                )
            return True

    def drop_table(self, name: str) -> bool:
        """Drop the table; ``False`` if it is already absent."""
        validate_identifier(name, engine=self.engine, kind="table")
        what = f"drop table {name!r}"
        with self._step(what) as step:
            live = self._inspect(step, name)
            if live is None or not self.same_name(live.name, name, kind="table"):
                return False
            self._ddl(step, DropTable(self._table(live.name)))
            return True

    def _require(self, step: _Step, table: str, what: str) -> LiveTable:
        live = self._inspect(step, table)
        if live is None:
            raise PermanentByodbError(
                f"{what}: {self.engine}: table {table!r} does not exist", engine=self.engine
            )
        return live

    def _sqlite_rebuild_without(self, conn: Connection, table: str, column: str) -> None:
        # SQLite < 3.35 has no DROP COLUMN: Alembic copies the table without it, inside our transaction.
        from alembic.operations import Operations
        from alembic.runtime.migration import MigrationContext

        operations = Operations(MigrationContext.configure(connection=conn))
        with operations.batch_alter_table(table, recreate="always") as batch:
            batch.drop_column(column)


def shape_difference(live: LiveTable, name: str, columns: Sequence[Column]) -> str | None:
    """What differs between the live table and the asked-for one (``None``: the same shape)."""
    problems: list[str] = []
    if live.name != name:
        problems.append(f"its name is spelled {live.name!r} (names are unique regardless of case)")
    wanted = {c.name.lower() for c in columns}
    for column in columns:
        existing = live.column(column.name)
        if existing is None:
            problems.append(f"column {column.name!r} is missing")
            continue
        problem = column_difference(existing, column)
        if problem:
            problems.append(f"column {column.name!r} has {problem}")
    extra = [c.name for c in live.columns if c.name.lower() not in wanted]
    if extra:
        problems.append(f"it has other columns: {', '.join(extra)}")
    return "; ".join(problems) or None


def column_difference(live: LiveColumn, column: Column) -> str | None:
    problems: list[str] = []
    if live.name != column.name:
        problems.append(f"the name spelled {live.name!r}")
    if live.type != column.type:
        shown = live.type.value if live.type else "no logical type"
        problems.append(f"type {live.raw_type} ({shown}) instead of {column.type.value}")
    nullable = column.nullable and not column.primary_key
    if live.nullable != nullable:
        problems.append("NULL allowed" if live.nullable else "NOT NULL")
    if live.primary_key != column.primary_key:
        problems.append("primary key" if live.primary_key else "no primary key")
    return ", ".join(problems) or None


def open_adapter(url: str, *, limits: DdlLimits = DdlLimits()) -> ByodbAdapter:  # noqa: B008
    """An adapter for ``url``; the engine comes from the URL's scheme (an unknown driver is permanent)."""
    return ByodbAdapter(url, limits=limits)
