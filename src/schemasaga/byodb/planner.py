"""The planner: the statements a change runs on one engine, written before it runs (pure, no I/O).

:func:`plan` compares the table's schema before and after a change and renders the difference for one
engine with that engine's SQLAlchemy dialect: every identifier quoted by the dialect's preparer, every
default a literal rendered (and escaped) by the dialect, never user text pasted into SQL. Each statement
says which lock it takes, whether it rewrites or reads every row, and whether it can run in a
transaction; the adapter's ``apply_plan`` executes exactly these statements.

Per engine:

* PostgreSQL: one transaction of ``ALTER TABLE`` statements in a safe order (rename, drop the old
  default, change the type ``USING col::type``, set the new default, nullability), then, outside any
  transaction, indexes and a column's unique index built or dropped ``CONCURRENTLY``.
* MySQL/MariaDB: one ``ALTER TABLE`` per change (``CHANGE COLUMN`` with the whole new definition plus
  ``ADD UNIQUE``/``DROP INDEX``), so a change is atomic even though DDL commits implicitly there.
* SQLite: renames and indexes are ``ALTER TABLE ... RENAME`` and ``CREATE``/``DROP INDEX``; a type,
  nullability or default change rebuilds the table in one transaction (create the new shape under a
  reserved name, copy every row, drop the old table, rename the new one, recreate the indexes).

Type changes follow :data:`TYPE_CHANGES`: widening ones always; narrowing or converting ones only after a
check of the existing rows (``byodb.rowchecks``, run by the adapter before any DDL); anything else is
:class:`~schemasaga.domain.errors.UnsupportedChange`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from schemasaga.byodb.identifiers import index_name
from schemasaga.byodb.types import dialect_for, type_for
from schemasaga.domain.changes import AddIndex, AlterColumn, Change, DropIndex, RenameTable
from schemasaga.domain.columns import PORTABLE_NAME_LIMIT, Column, ColumnType, Index, TableSchema
from schemasaga.domain.errors import UnsupportedChange
from schemasaga.domain.plan import Plan, Statement
from schemasaga.domain.schema import LiveIndex, LiveTable

__all__ = [
    "GENERATED_NAME_LENGTH",
    "LEGACY_ALTER_OFF",
    "REBUILD_PREFIX",
    "RENAME_PREFIX",
    "TYPE_CHANGES",
    "Conversion",
    "Sql",
    "change_between",
    "check_index",
    "conversion",
    "created_index_names",
    "index_name",
    "middle_schema",
    "names_live_indexes",
    "plan",
    "rebuilds",
    "sqlite_copy",
    "unique_index_name",
]

T = ColumnType

GENERATED_NAME_LENGTH = PORTABLE_NAME_LIMIT
"""The longest generated name: PostgreSQL's limit, the smallest of the three (names are ASCII)."""

REBUILD_PREFIX = "_schemasaga_new_"
"""SQLite rebuilds create the new shape under this prefix plus the table's name, in their transaction."""

RENAME_PREFIX = "_schemasaga_renamed_"
"""SQLite renames a table to its own name in other letters through this prefix plus the new name, in the
plan's transaction."""


# -- generated names -------------------------------------------------------------------------------


def unique_index_name(table: str, column: str) -> str:
    """The name of the unique index that makes ``column`` unique, as creating the table or adding the
    column names it (``identifiers.index_name``: ``uq_<table>_<column>_<digest>``, at most 63 characters)."""
    return index_name(table, (column,), True)


# -- the type-change matrix ------------------------------------------------------------------------


class Conversion(StrEnum):
    WIDEN = "widen"  # every value fits: no check
    CHECK = "check"  # the existing rows are checked first; a value that does not fit refuses the change


_TEXTS = (T.TEXT, T.STRING)
_WIDEN: set[tuple[ColumnType, ColumnType]] = {
    (T.INTEGER, T.BIGINT),
    (T.INTEGER, T.DECIMAL),
    (T.INTEGER, T.FLOAT),
    (T.BIGINT, T.DECIMAL),
    (T.STRING, T.TEXT),
    (T.DATE, T.TIMESTAMP),
    (T.DATE, T.DATETIME),
    # anything to text; anything whose text is short to string
    *((source, T.TEXT) for source in T if source is not T.TEXT),
    *(
        (source, T.STRING)
        for source in (
            T.INTEGER,
            T.BIGINT,
            T.BOOLEAN,
            T.FLOAT,
            T.DECIMAL,
            T.DATE,
            T.TIMESTAMP,
            T.DATETIME,
            T.UUID,
        )
    ),
}
_CHECK: set[tuple[ColumnType, ColumnType]] = {
    (T.BIGINT, T.INTEGER),
    (T.DECIMAL, T.INTEGER),
    (T.DECIMAL, T.BIGINT),
    (T.FLOAT, T.DECIMAL),
    (T.TEXT, T.STRING),
    (T.JSON, T.STRING),
    *(
        (source, target)
        for source in _TEXTS
        for target in (
            T.INTEGER,
            T.BIGINT,
            T.FLOAT,
            T.DECIMAL,
            T.BOOLEAN,
            T.DATE,
            T.TIMESTAMP,
            T.UUID,
            T.JSON,
        )
    ),
}


def _matrix(
    *, without: frozenset[tuple[ColumnType, ColumnType]] = frozenset()
) -> Mapping[tuple[ColumnType, ColumnType], Conversion]:
    found = {pair: Conversion.WIDEN for pair in _WIDEN - without}
    found.update({pair: Conversion.CHECK for pair in _CHECK - without})
    order = list(ColumnType)
    return MappingProxyType(
        {pair: found[pair] for pair in sorted(found, key=lambda p: (order.index(p[0]), order.index(p[1])))}
    )


TYPE_CHANGES: Mapping[str, Mapping[tuple[ColumnType, ColumnType], Conversion]] = MappingProxyType(
    {
        "postgresql": _matrix(),
        # MySQL's TIMESTAMP (our datetime) ends in 2038: a date may not fit.
        "mysql": _matrix(without=frozenset({(T.DATE, T.DATETIME)})),
        "sqlite": _matrix(),
    }
)
"""The supported type changes per engine: (from, to) to whether the rows are checked first."""


def conversion(engine: str, source: ColumnType, target: ColumnType) -> Conversion:
    """How ``source`` becomes ``target`` on ``engine``; :class:`UnsupportedChange` when it cannot."""
    found = TYPE_CHANGES[engine].get((source, target))
    if found is None:
        raise UnsupportedChange(
            f"changing a column from {source.value} to {target.value} is not supported on {engine} "
            "(see 'Type changes per engine' in the README)"
        )
    return found


# -- rendering -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """The dialect of one engine, with the helpers that render names, types and literals."""

    engine: str
    dialect: Dialect

    @classmethod
    def of(cls, engine: str) -> Sql:
        # A named paramstyle: the statements are executed as they are, with no parameters, so a '%' in
        # a literal must stay a single '%' (pyformat dialects would double it).
        base = dialect_for(engine)
        named: Dialect = type(base)(paramstyle="named")  # type: ignore[call-arg]
        return cls(engine, named)

    def q(self, name: str) -> str:
        return str(self.dialect.identifier_preparer.quote_identifier(name))

    def type(self, kind: ColumnType) -> str:
        return str(type_for(self.engine, kind).compile(dialect=self.dialect))

    def literal(self, kind: ColumnType, value: Any) -> str:
        """The default ``value`` (canonical JSON literal of ``kind``) as SQL, rendered by the dialect."""
        sa_value: Any
        sa_type: Any
        if kind in (T.INTEGER, T.BIGINT):
            sa_value, sa_type = int(value), sa.BigInteger()
        elif kind is T.FLOAT:
            sa_value, sa_type = float(value), sa.Float()
        elif kind is T.DECIMAL:
            sa_value, sa_type = Decimal(str(value)), sa.Numeric(38, 10)
        elif kind is T.BOOLEAN:
            sa_value, sa_type = bool(value), sa.Boolean()
        elif kind is T.JSON:
            sa_value, sa_type = json.dumps(value, ensure_ascii=False), sa.String()
        elif kind is T.DATETIME and self.engine == "mysql":
            # TIMESTAMP literals carry no offset on MariaDB; the canonical form is in UTC already
            sa_value, sa_type = str(value).removesuffix("+00:00"), sa.String()
        else:
            sa_value, sa_type = str(value), sa.String()
        return str(
            sa.literal(sa_value, sa_type).compile(
                dialect=self.dialect, compile_kwargs={"literal_binds": True}
            )
        )

    def definition(self, column: Column) -> str:
        """``<type> [NOT] NULL [DEFAULT <literal>]``: a column's definition after its name."""
        parts = [self.type(column.type), "NULL" if column.effective_nullable else "NOT NULL"]
        if column.default is not None:
            literal = self.literal(column.type, column.default)
            if self.engine == "mysql" and column.type in (T.TEXT, T.JSON):
                # MySQL 8 takes a default on TEXT and JSON only as an expression; MariaDB either way
                literal = f"({literal})"
            parts.append(f"DEFAULT {literal}")
        return " ".join(parts)


# -- locks -----------------------------------------------------------------------------------------

PG_ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
PG_SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SQLITE_LOCK = "database write lock"
SQLITE_SETTING = "none (a setting of the connection)"
LEGACY_ALTER_ON = "PRAGMA legacy_alter_table = ON"
LEGACY_ALTER_OFF = "PRAGMA legacy_alter_table = OFF"


def _mysql_lock(algorithm: str) -> str:
    blocks = {
        "INSTANT": "metadata only",
        "INPLACE": "reads and writes continue while it runs",
        "COPY": "writes wait while the table is copied",
    }[algorithm]
    return f"metadata lock (exclusive briefly at start and end); ALGORITHM={algorithm}: {blocks}"


# -- the plan --------------------------------------------------------------------------------------


def plan(
    engine: str,
    before: TableSchema,
    after: TableSchema,
    change: Change,
    *,
    live: LiveTable | None = None,
) -> Plan:
    """The statements that turn table ``before`` into ``after`` by ``change`` on ``engine``.

    ``live`` (the table as inspected, when known) supplies the physical names of its indexes, which
    may differ from the generated ones (a table or column renamed since the index was made)."""
    names = _LiveNames(live.indexes if live is not None else ())
    sql = Sql.of(engine)
    statements: list[Statement]
    warnings: list[str] = []
    match change:
        case RenameTable():
            statements = _rename_table(sql, before.name, after.name)
        case AddIndex(index=index):
            statements = [_create_index(sql, after, index)]
            if index.unique:
                warnings.append(
                    f"unique: existing rows are checked for duplicates of {list(index.columns)} first"
                )
        case DropIndex(index=index):
            statements = [_drop_index(sql, before, names.index(index.name) or index.name)]
        case AlterColumn(name=name, column=new):
            old = before.column(name)
            if old is None:
                raise UnsupportedChange(f"table {before.name!r} has no column {name!r}")
            statements, warnings = _alter_column(sql, before, after, old, new, names)
        case _:
            raise UnsupportedChange(f"no plan is written for a {change.kind.value} change")
    if any(s.rewrites for s in statements):
        warnings.append("rewrites the table: every row is copied while the change runs")
    elif any(s.scans for s in statements):
        warnings.append("scans every row")
    if any(not s.transactional for s in statements):
        warnings.append(
            "builds or drops an index CONCURRENTLY, outside a transaction: writes continue meanwhile"
        )
    return Plan(engine=engine, statements=tuple(statements), warnings=tuple(dict.fromkeys(warnings)))


def _rename_table(sql: Sql, old: str, new: str) -> list[Statement]:
    text = f"ALTER TABLE {sql.q(old)} RENAME TO {sql.q(new)}"
    if sql.engine == "postgresql":
        return [Statement(text, PG_ACCESS_EXCLUSIVE)]
    if sql.engine == "mysql":
        return [Statement(text, _mysql_lock("INSTANT"))]
    if old.lower() == new.lower():
        # SQLite's names are case-insensitive: it refuses to rename a table to its own name in other
        # letters ("there is already another table"). Through another name, in the plan's transaction.
        through = sql.q(f"{RENAME_PREFIX}{new}")
        return [
            Statement(f"ALTER TABLE {sql.q(old)} RENAME TO {through}", SQLITE_LOCK),
            Statement(f"ALTER TABLE {through} RENAME TO {sql.q(new)}", SQLITE_LOCK),
        ]
    return [Statement(text, SQLITE_LOCK)]


def _index_columns(sql: Sql, columns: Sequence[str]) -> str:
    return ", ".join(sql.q(c) for c in columns)


def check_index(engine: str, table: TableSchema, index: Index) -> None:
    """Refuse an index ``engine`` cannot make as asked: on MySQL/MariaDB, a plain index on a text or json
    column needs a prefix length (MariaDB makes a prefix index, which is not the index asked for)."""
    if engine != "mysql" or index.unique:
        return
    texts = [
        c for c in index.columns if (col := table.column(c)) is not None and col.type in (T.TEXT, T.JSON)
    ]
    if texts:
        raise UnsupportedChange(
            f"an index on a {', '.join(map(repr, texts))} text or json column is not supported on "
            "MySQL/MariaDB (it needs a prefix length): use a string column"
        )


def _create_index(sql: Sql, table: TableSchema, index: Index) -> Statement:
    unique = "UNIQUE " if index.unique else ""
    columns = _index_columns(sql, index.columns)
    if sql.engine == "postgresql":
        return Statement(
            f"CREATE {unique}INDEX CONCURRENTLY {sql.q(index.name)} ON {sql.q(table.name)} ({columns})",
            PG_SHARE_UPDATE_EXCLUSIVE,
            scans=True,
            transactional=False,
        )
    if sql.engine == "mysql":
        check_index(sql.engine, table, index)
        return Statement(
            f"ALTER TABLE {sql.q(table.name)} ADD {unique}INDEX {sql.q(index.name)} ({columns})",
            _mysql_lock("INPLACE"),
            scans=True,
        )
    return Statement(
        f"CREATE {unique}INDEX {sql.q(index.name)} ON {sql.q(table.name)} ({columns})",
        SQLITE_LOCK,
        scans=True,
    )


def _drop_index(sql: Sql, table: TableSchema, name: str) -> Statement:
    if sql.engine == "postgresql":
        return Statement(
            f"DROP INDEX CONCURRENTLY {sql.q(name)}", PG_SHARE_UPDATE_EXCLUSIVE, transactional=False
        )
    if sql.engine == "mysql":
        return Statement(f"ALTER TABLE {sql.q(table.name)} DROP INDEX {sql.q(name)}", _mysql_lock("INPLACE"))
    return Statement(f"DROP INDEX {sql.q(name)}", SQLITE_LOCK)


@dataclass(frozen=True)
class _LiveNames:
    """The live table's indexes, for their physical names."""

    indexes: tuple[LiveIndex, ...] = ()

    def index(self, wanted: str) -> str | None:
        """The physical spelling of the index called ``wanted`` (in any letter case)."""
        found = next((i for i in self.indexes if i.name.lower() == wanted.lower()), None)
        return found.name if found is not None else None

    def unique_of(self, table: str, column: str) -> str:
        """The name of ``column``'s unique index: a valid unique index on it alone, else the generated."""
        found = next(
            (
                i
                for i in self.indexes
                if i.unique and i.valid and [c.lower() for c in i.columns] == [column.lower()]
            ),
            None,
        )
        return found.name if found is not None else unique_index_name(table, column)


def _alter_column(
    sql: Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
) -> tuple[list[Statement], list[str]]:
    warnings: list[str] = []
    kind: Conversion | None = None
    if old.type != new.type:
        kind = conversion(sql.engine, old.type, new.type)
        if kind is Conversion.CHECK:
            warnings.append(
                f"narrowing type {old.type.value} to {new.type.value}: existing rows are checked first"
            )
    if new.effective_nullable is False and old.effective_nullable:
        warnings.append(f"NOT NULL: existing rows of {new.name!r} are checked for NULL first")
    if new.unique and not old.unique:
        warnings.append(f"unique: existing rows of {new.name!r} are checked for duplicates first")
    if sql.engine == "postgresql":
        return _pg_alter(sql, before, after, old, new, names), warnings
    if sql.engine == "mysql":
        return _mysql_alter(sql, before, old, new, names), warnings
    return _sqlite_alter(sql, before, after, old, new, names), warnings


def _pg_alter(
    sql: Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
) -> list[Statement]:
    table = sql.q(before.name)
    col = sql.q(new.name)
    out: list[Statement] = []
    if old.name != new.name:
        out.append(
            Statement(f"ALTER TABLE {table} RENAME COLUMN {sql.q(old.name)} TO {col}", PG_ACCESS_EXCLUSIVE)
        )
    type_changes = old.type != new.type
    if old.default is not None and (type_changes or new.default is None):
        # the old default may not cast to the new type: drop it first, set the new one after
        out.append(Statement(f"ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT", PG_ACCESS_EXCLUSIVE))
    if type_changes:
        kind = sql.type(new.type)
        out.append(
            Statement(
                f"ALTER TABLE {table} ALTER COLUMN {col} TYPE {kind} USING {col}::{kind}",
                PG_ACCESS_EXCLUSIVE,
                # varchar to text is binary-coercible: no rewrite, nothing to check
                rewrites=(old.type, new.type) != (T.STRING, T.TEXT),
                scans=(old.type, new.type) != (T.STRING, T.TEXT),
            )
        )
    if new.default is not None and (type_changes or new.default != old.default):
        out.append(
            Statement(
                f"ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {sql.literal(new.type, new.default)}",
                PG_ACCESS_EXCLUSIVE,
            )
        )
    if old.effective_nullable != new.effective_nullable:
        if new.effective_nullable:
            out.append(
                Statement(f"ALTER TABLE {table} ALTER COLUMN {col} DROP NOT NULL", PG_ACCESS_EXCLUSIVE)
            )
        else:
            out.append(
                Statement(
                    f"ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL", PG_ACCESS_EXCLUSIVE, scans=True
                )
            )
    if new.unique and not old.unique:
        name = unique_index_name(after.name, new.name)
        out.append(
            Statement(
                f"CREATE UNIQUE INDEX CONCURRENTLY {sql.q(name)} ON {table} ({col})",
                PG_SHARE_UPDATE_EXCLUSIVE,
                scans=True,
                transactional=False,
            )
        )
    elif old.unique and not new.unique:
        name = names.unique_of(before.name, old.name)
        out.append(
            Statement(
                f"DROP INDEX CONCURRENTLY {sql.q(name)}", PG_SHARE_UPDATE_EXCLUSIVE, transactional=False
            )
        )
    return out


def _mysql_alter(
    sql: Sql, before: TableSchema, old: Column, new: Column, names: _LiveNames
) -> list[Statement]:
    table = sql.q(before.name)
    if new.type in (T.TEXT, T.JSON) and old.type not in (T.TEXT, T.JSON):
        indexed = [i.name for i in before.indexes if old.name in i.columns and not i.unique]
        if indexed:
            raise UnsupportedChange(
                f"column {old.name!r} is in index(es) {', '.join(indexed)}: a {new.type.value} column cannot "
                "be in a plain index on MySQL/MariaDB (it needs a prefix length); drop the index first"
            )
    clauses: list[str] = []
    definition_changes = (
        old.type != new.type or old.effective_nullable != new.effective_nullable or old.default != new.default
    )
    rewrites = old.type != new.type or old.effective_nullable != new.effective_nullable
    if definition_changes:
        clauses.append(f"CHANGE COLUMN {sql.q(old.name)} {sql.q(new.name)} {sql.definition(new)}")
    elif old.name != new.name:
        clauses.append(f"RENAME COLUMN {sql.q(old.name)} TO {sql.q(new.name)}")
    if new.unique and not old.unique:
        clauses.append(
            f"ADD UNIQUE INDEX {sql.q(unique_index_name(before.name, new.name))} ({sql.q(new.name)})"
        )
    elif old.unique and not new.unique:
        clauses.append(f"DROP INDEX {sql.q(names.unique_of(before.name, old.name))}")
    if old.type != new.type:
        algorithm = "COPY"
    elif rewrites or new.unique != old.unique:
        algorithm = "INPLACE"
    else:
        algorithm = "INSTANT"
    scans = rewrites or (new.unique and not old.unique)
    return [
        Statement(
            f"ALTER TABLE {table} {', '.join(clauses)}",
            _mysql_lock(algorithm),
            rewrites=rewrites,
            scans=scans,
        )
    ]


def rebuilds(before: TableSchema, change: Change) -> bool:
    """Whether SQLite rebuilds the table for ``change`` (a type, nullability or default change)."""
    if not isinstance(change, AlterColumn):
        return False
    old, new = before.column(change.name), change.column
    return old is not None and (
        old.type != new.type or old.effective_nullable != new.effective_nullable or old.default != new.default
    )


def _sqlite_alter(
    sql: Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
) -> list[Statement]:
    table = sql.q(before.name)
    if rebuilds(before, AlterColumn(old.name, new)):
        return _sqlite_rebuild(sql, before, after, old, new, names)
    out: list[Statement] = []
    if old.name != new.name:
        out.append(
            Statement(
                f"ALTER TABLE {table} RENAME COLUMN {sql.q(old.name)} TO {sql.q(new.name)}", SQLITE_LOCK
            )
        )
    if new.unique and not old.unique:
        name = unique_index_name(after.name, new.name)
        out.append(
            Statement(
                f"CREATE UNIQUE INDEX {sql.q(name)} ON {table} ({sql.q(new.name)})", SQLITE_LOCK, scans=True
            )
        )
    elif old.unique and not new.unique:
        out.append(Statement(f"DROP INDEX {sql.q(names.unique_of(before.name, old.name))}", SQLITE_LOCK))
    return out


def sqlite_copy(source: str, old: ColumnType, new: ColumnType) -> str:
    """The SQL expression that turns a value of ``old`` (column ``source``) into one of ``new``."""
    if old == new:
        return source
    if new in (T.INTEGER, T.BIGINT):
        return f"CAST({source} AS INTEGER)"
    if new is T.FLOAT:
        return f"CAST({source} AS REAL)"
    if new is T.DECIMAL:
        return f"CAST({source} AS NUMERIC)"
    if new in (T.TEXT, T.STRING):
        return f"CAST({source} AS TEXT)"
    if new is T.BOOLEAN:
        return (
            f"CASE lower(trim({source})) WHEN 'true' THEN 1 WHEN '1' THEN 1 "
            "WHEN 'false' THEN 0 WHEN '0' THEN 0 END"
        )
    if old is T.DATE and new in (T.TIMESTAMP, T.DATETIME):
        return f"datetime({source})"
    return source  # text checked to be in the new type's form already (date, timestamp, uuid, json)


def _sqlite_rebuild(
    sql: Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
) -> list[Statement]:
    temporary = f"{REBUILD_PREFIX}{before.name}"
    definitions = [f"{sql.q(c.name)} {sql.definition(c)}" for c in after.columns]
    if after.primary_key:
        definitions.append(f"PRIMARY KEY ({_index_columns(sql, after.primary_key)})")
    create = f"CREATE TABLE {sql.q(temporary)} ({', '.join(definitions)})"
    targets = ", ".join(sql.q(c.name) for c in after.columns)
    sources = ", ".join(
        sqlite_copy(sql.q(old.name), old.type, new.type) if c.name == new.name else sql.q(c.name)
        for c in after.columns
    )
    copy = f"INSERT INTO {sql.q(temporary)} ({targets}) SELECT {sources} FROM {sql.q(before.name)}"
    out = [
        # Since SQLite 3.26 a rename checks every view and trigger, and a view on the table fails that
        # check while the table is dropped: the legacy rename leaves them as they are (they name the
        # table, which exists again once renamed).
        Statement(LEGACY_ALTER_ON, SQLITE_SETTING),
        Statement(create, SQLITE_LOCK),
        Statement(copy, SQLITE_LOCK, rewrites=True, scans=True),
        Statement(f"DROP TABLE {sql.q(before.name)}", SQLITE_LOCK),
        Statement(f"ALTER TABLE {sql.q(temporary)} RENAME TO {sql.q(after.name)}", SQLITE_LOCK),
        Statement(LEGACY_ALTER_OFF, SQLITE_SETTING),
    ]
    # Dropping the old table dropped its indexes: make them again, under their live names.
    renames = {old.name: new.name}
    for index in before.indexes:
        name = names.index(index.name) or index.name
        columns = [renames.get(c, c) for c in index.columns]
        unique = "UNIQUE " if index.unique else ""
        out.append(
            Statement(
                f"CREATE {unique}INDEX {sql.q(name)} ON {sql.q(after.name)} ({_index_columns(sql, columns)})",
                SQLITE_LOCK,
                scans=True,
            )
        )
    for column in after.columns:
        was = before.column(old.name if column.name == new.name else column.name)
        if not column.unique:
            continue
        if was is not None and was.unique:
            name = names.unique_of(before.name, was.name)
        else:
            name = unique_index_name(after.name, column.name)
        out.append(
            Statement(
                f"CREATE UNIQUE INDEX {sql.q(name)} ON {sql.q(after.name)} ({sql.q(column.name)})",
                SQLITE_LOCK,
                scans=True,
            )
        )
    return out


def names_live_indexes(engine: str, before: TableSchema, change: Change) -> bool:
    """Whether the plan of ``change`` names indexes that exist (to drop or, in a SQLite rebuild, to make
    again), so that it needs their live names; the other plans are written from the schemas alone."""
    match change:
        case DropIndex():
            return True
        case AlterColumn(name=name, column=new):
            old = before.column(name)
            if old is None:
                return False
            return (old.unique and not new.unique) or (engine == "sqlite" and rebuilds(before, change))
    return False


def created_index_names(before: TableSchema, after: TableSchema, change: Change) -> list[str]:
    """The names that a change's plan gives to indexes new to the table (a new index, the unique index
    of a column made unique); not those a SQLite rebuild makes again."""
    match change:
        case AddIndex(index=index):
            return [index.name]
        case AlterColumn(name=name, column=new) if new.unique:
            old = before.column(name)
            if old is not None and not old.unique:
                return [unique_index_name(after.name, new.name)]
    return []


def middle_schema(before: TableSchema, after: TableSchema, change: Change) -> TableSchema:
    """The schema once a plan's transactional statements ran and its non-transactional ones (PostgreSQL's
    CONCURRENTLY index builds and drops, which run after them) did not yet: ``after`` with ``before``'s
    indexes and uniques, renamed as the change renames columns."""
    renames = change.column_renames
    reverse = {new: old for old, new in renames.items()}
    columns = []
    for column in after.columns:
        was = before.column(reverse.get(column.name, column.name))
        columns.append(replace(column, unique=was.unique if was is not None else column.unique))
    indexes = tuple(replace(i, columns=tuple(renames.get(c, c) for c in i.columns)) for i in before.indexes)
    return replace(after, columns=tuple(columns), indexes=indexes)


def change_between(before: TableSchema, after: TableSchema) -> Change:
    """The one change that turns ``before`` into ``after`` (a plan's change, when the caller has only the
    two schemas): a table rename, an index added or dropped, or one column altered (columns keep their
    place when altered, so the two column lists pair up by position)."""
    if before.name != after.name:
        return RenameTable(after.name)
    added = [i for i in after.indexes if i not in before.indexes]
    dropped = [i for i in before.indexes if i not in after.indexes]
    if len(after.indexes) > len(before.indexes) and len(added) == 1:
        return AddIndex(added[0])
    if len(after.indexes) < len(before.indexes) and len(dropped) == 1:
        return DropIndex(dropped[0])
    changed = [(b, a) for b, a in zip(before.columns, after.columns, strict=False) if b != a]
    if len(before.columns) == len(after.columns) and len(changed) == 1:
        old, new = changed[0]
        return AlterColumn(old.name, new)
    raise UnsupportedChange(
        f"table {before.name!r}: no single change turns the schema before into the one after"
    )
