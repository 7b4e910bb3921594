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
check of the existing rows (:func:`incompatible_predicate`, run by the adapter before any DDL); anything
else is :class:`~schemasaga.domain.errors.UnsupportedChange`.
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
    "CLIENT_SIDE_JSON",
    "GENERATED_NAME_LENGTH",
    "LEGACY_ALTER_OFF",
    "REBUILD_PREFIX",
    "TYPE_CHANGES",
    "Conversion",
    "RowCheck",
    "change_between",
    "conversion",
    "converted",
    "created_index_names",
    "incompatible_predicate",
    "index_name",
    "middle_schema",
    "names_live_indexes",
    "plan",
    "rebuilds",
    "unique_index_name",
]

T = ColumnType

GENERATED_NAME_LENGTH = PORTABLE_NAME_LIMIT
"""The longest generated name: PostgreSQL's limit, the smallest of the three (names are ASCII)."""

REBUILD_PREFIX = "_schemasaga_new_"
"""SQLite rebuilds create the new shape under this prefix plus the table's name, in their transaction."""


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
class _Sql:
    """The dialect of one engine, with the helpers that render names, types and literals."""

    engine: str
    dialect: Dialect

    @classmethod
    def of(cls, engine: str) -> _Sql:
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
    sql = _Sql.of(engine)
    statements: list[Statement]
    warnings: list[str] = []
    match change:
        case RenameTable():
            statements = [_rename_table(sql, before.name, after.name)]
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


def _rename_table(sql: _Sql, old: str, new: str) -> Statement:
    text = f"ALTER TABLE {sql.q(old)} RENAME TO {sql.q(new)}"
    if sql.engine == "postgresql":
        return Statement(text, PG_ACCESS_EXCLUSIVE)
    if sql.engine == "mysql":
        return Statement(text, _mysql_lock("INSTANT"))
    return Statement(text, SQLITE_LOCK)


def _index_columns(sql: _Sql, columns: Sequence[str]) -> str:
    return ", ".join(sql.q(c) for c in columns)


def _create_index(sql: _Sql, table: TableSchema, index: Index) -> Statement:
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
        texts = [
            c for c in index.columns if (col := table.column(c)) is not None and col.type in (T.TEXT, T.JSON)
        ]
        if texts and not index.unique:
            raise UnsupportedChange(
                f"an index on a {', '.join(map(repr, texts))} text or json column is not supported on "
                "MySQL/MariaDB (it needs a prefix length): use a string column"
            )
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


def _drop_index(sql: _Sql, table: TableSchema, name: str) -> Statement:
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
    sql: _Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
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
    sql: _Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
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
    sql: _Sql, before: TableSchema, old: Column, new: Column, names: _LiveNames
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
    sql: _Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
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


def _sqlite_copy(source: str, old: ColumnType, new: ColumnType) -> str:
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
    sql: _Sql, before: TableSchema, after: TableSchema, old: Column, new: Column, names: _LiveNames
) -> list[Statement]:
    temporary = f"{REBUILD_PREFIX}{before.name}"
    definitions = [f"{sql.q(c.name)} {sql.definition(c)}" for c in after.columns]
    if after.primary_key:
        definitions.append(f"PRIMARY KEY ({_index_columns(sql, after.primary_key)})")
    create = f"CREATE TABLE {sql.q(temporary)} ({', '.join(definitions)})"
    targets = ", ".join(sql.q(c.name) for c in after.columns)
    sources = ", ".join(
        _sqlite_copy(sql.q(old.name), old.type, new.type) if c.name == new.name else sql.q(c.name)
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


# -- data checks -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowCheck:
    """Rows that would violate a change: how many, up to five of their primary keys, and why."""

    count: int
    primary_keys: tuple[Any, ...]
    reason: str

    @property
    def message(self) -> str:
        keys = ", ".join(map(repr, self.primary_keys))
        sample = (
            f" (primary keys {keys}{', ...' if self.count > len(self.primary_keys) else ''})" if keys else ""
        )
        rows = "row" if self.count == 1 else "rows"
        return f"{self.count} {rows} {self.reason}{sample}"


_INT_RANGE = {T.INTEGER: (-(2**31), 2**31 - 1), T.BIGINT: (-(2**63), 2**63 - 1)}
_HEX = "[0-9a-fA-F]"
_UUID_RE = f"^{_HEX}{{8}}-({_HEX}{{4}}-){{3}}{_HEX}{{12}}$"
_INT_RE = "^[+-]?[0-9]{1,19}$"
_FLOAT_RE = "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]{1,3})?$"
_DECIMAL_RE = "^[+-]?[0-9]{1,28}([.][0-9]{0,10})?$"
_DATE_RE = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME_RE = " ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?$"
_PG_BOOLEANS = "('true', 'false', 't', 'f', 'yes', 'no', 'y', 'n', 'on', 'off', '1', '0')"
_SQLITE_UUID_GLOB = "-".join(_HEX * n for n in (8, 4, 4, 4, 12))
_SQLITE_TIMESTAMP_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"

CLIENT_SIDE_JSON = "json"
"""Returned by :func:`incompatible_predicate` where the engine cannot test JSON text in SQL (PostgreSQL 15
has no ``pg_input_is_valid``): the adapter reads the values and parses them itself."""


def incompatible_predicate(engine: str, source: ColumnType, target: ColumnType, column: str) -> str | None:
    """A SQL condition true for a (non-NULL) value of ``column`` (already quoted) that cannot become a
    ``target``; ``None`` when every value fits (a widening change); :data:`CLIENT_SIDE_JSON` when the
    values are to be checked by the caller. Only constants of ours appear in it, never user text."""
    if conversion(engine, source, target) is Conversion.WIDEN:
        return None
    if engine == "postgresql":
        return _pg_predicate(source, target, column)
    if engine == "mysql":
        return _mysql_predicate(source, target, column)
    return _sqlite_predicate(source, target, column)


def converted(engine: str, source: ColumnType, target: ColumnType, column: str) -> str:
    """``column`` (quoted) as a value of ``target``, for comparing values as they will be after a type
    change (``'1'`` and ``'01'`` are one integer); only to be evaluated once every value fits."""
    if source == target:
        return column
    if engine == "postgresql":
        kind = _Sql.of(engine).type(target)
        return f"{column}::{kind}"
    if engine == "sqlite":
        return _sqlite_copy(column, source, target)
    casts = {
        T.INTEGER: "SIGNED",
        T.BIGINT: "SIGNED",
        T.BOOLEAN: "SIGNED",
        T.DECIMAL: "DECIMAL(38, 10)",
        T.FLOAT: "DOUBLE",
        T.DATE: "DATE",
        T.TIMESTAMP: "DATETIME(6)",
    }
    return f"CAST({column} AS {casts[target]})" if target in casts else column


def _pg_date_invalid(x: str) -> str:
    # the form, then the day within its month (PostgreSQL 15 cannot try a cast without an error)
    return (
        f"CASE WHEN {x} ~ '{_DATE_RE}' AND substr({x}, 1, 4) <> '0000' "
        f"THEN substr({x}, 9, 2)::int > extract(day from make_date(substr({x}, 1, 4)::int, "
        f"substr({x}, 6, 2)::int, 1) + interval '1 month' - interval '1 day') ELSE true END"
    )


def _pg_predicate(source: ColumnType, target: ColumnType, column: str) -> str:
    x = f"{column}::text"
    if target in _INT_RANGE:
        low, high = _INT_RANGE[target]
        if source in (T.BIGINT, T.DECIMAL):
            return f"({column} <> trunc({column}) OR {column} < {low} OR {column} > {high})"
        return f"CASE WHEN {x} ~ '{_INT_RE}' THEN {x}::numeric NOT BETWEEN {low} AND {high} ELSE true END"
    if target is T.DECIMAL:
        if source is T.FLOAT:
            return f"NOT (abs({column}) < 1e28)"
        return f"{x} !~ '{_DECIMAL_RE}'"
    if target is T.FLOAT:
        return f"CASE WHEN {x} ~ '{_FLOAT_RE}' THEN abs({x}::numeric) > 1e300 ELSE true END"
    if target is T.STRING:
        return f"char_length({x}) > 255"
    if target is T.BOOLEAN:
        return f"lower(trim({x})) NOT IN {_PG_BOOLEANS}"
    if target is T.DATE:
        return f"(length({x}) <> 10 OR {_pg_date_invalid(x)})"
    if target is T.TIMESTAMP:
        return f"({x} !~ '{_DATE_RE}{_TIME_RE}' OR {_pg_date_invalid(f'substr({x}, 1, 10)')})"
    if target is T.UUID:
        return f"{x} !~ '{_UUID_RE}'"
    if target is T.JSON:
        return CLIENT_SIDE_JSON
    raise UnsupportedChange(f"no check for {source.value} to {target.value}")  # pragma: no cover


def _mysql_predicate(source: ColumnType, target: ColumnType, column: str) -> str:
    x = column
    if target in _INT_RANGE:
        low, high = _INT_RANGE[target]
        if source in (T.BIGINT, T.DECIMAL):
            return f"({x} <> TRUNCATE({x}, 0) OR {x} < {low} OR {x} > {high})"
        return f"({x} NOT REGEXP '{_INT_RE}' OR CAST({x} AS DECIMAL(30, 0)) NOT BETWEEN {low} AND {high})"
    if target is T.DECIMAL:
        if source is T.FLOAT:
            return f"NOT (ABS({x}) < 1e28)"
        return f"{x} NOT REGEXP '{_DECIMAL_RE}'"
    if target is T.FLOAT:
        # (CAST saturates at the largest DOUBLE where the text is larger)
        return f"({x} NOT REGEXP '{_FLOAT_RE}' OR ABS(CAST({x} AS DOUBLE)) > 1e308)"
    if target is T.STRING:
        return f"CHAR_LENGTH({x}) > 255"
    if target is T.BOOLEAN:
        # BOOL is TINYINT(1): only digits convert
        return f"TRIM({x}) NOT IN ('0', '1')"
    date_invalid = (
        f"DAYOFMONTH(LAST_DAY(CONCAT(LEFT({x}, 7), '-01'))) < CAST(SUBSTRING({x}, 9, 2) AS UNSIGNED)"
    )
    if target is T.DATE:
        return f"({x} NOT REGEXP '{_DATE_RE}$' OR {date_invalid})"
    if target is T.TIMESTAMP:
        return f"({x} NOT REGEXP '{_DATE_RE}{_TIME_RE}' OR {date_invalid})"
    if target is T.UUID:
        return f"{x} NOT REGEXP '{_UUID_RE}'"
    if target is T.JSON:
        return f"NOT JSON_VALID({x})"
    raise UnsupportedChange(f"no check for {source.value} to {target.value}")  # pragma: no cover


def _sqlite_predicate(source: ColumnType, target: ColumnType, column: str) -> str:
    x = column
    if target in _INT_RANGE:
        low, high = _INT_RANGE[target]
        if source in (T.BIGINT, T.DECIMAL):
            return f"({x} <> CAST({x} AS INTEGER) OR {x} < {low} OR {x} > {high})"
        return (
            f"CASE WHEN json_valid({x}) THEN json_type({x}) <> 'integer' "
            f"OR CAST({x} AS INTEGER) NOT BETWEEN {low} AND {high} ELSE 1 END"
        )
    if target is T.FLOAT:
        return (
            f"CASE WHEN json_valid({x}) THEN json_type({x}) NOT IN ('integer', 'real') "
            f"OR abs(CAST({x} AS REAL)) > 1e308 ELSE 1 END"
        )
    if target is T.DECIMAL:
        if source is T.FLOAT:
            return f"NOT (abs({x}) < 1e28)"
        return (
            f"CASE WHEN json_valid({x}) THEN json_type({x}) NOT IN ('integer', 'real') "
            f"OR instr(lower({x}), 'e') > 0 OR abs(CAST({x} AS REAL)) >= 1e28 "
            f"OR (instr({x}, '.') > 0 AND length({x}) - instr({x}, '.') > 10) ELSE 1 END"
        )
    if target is T.STRING:
        return f"length({x}) > 255"
    if target is T.BOOLEAN:
        return f"lower(trim({x})) NOT IN ('true', 'false', '1', '0')"
    if target is T.DATE:
        # a modifier makes SQLite normalise the date ('2023-02-29' becomes '2023-03-01'), so it differs
        return f"date({x}, '+0 days') IS NOT {x}"
    if target is T.TIMESTAMP:
        return (
            f"({x} NOT GLOB '{_SQLITE_TIMESTAMP_GLOB}*' "
            f"OR datetime(substr({x}, 1, 19), '+0 seconds') IS NOT substr({x}, 1, 19) "
            f"OR (length({x}) > 19 AND (substr({x}, 20, 1) <> '.' OR length({x}) NOT BETWEEN 21 AND 26 "
            f"OR substr({x}, 21) GLOB '*[^0-9]*')))"
        )
    if target is T.UUID:
        return f"{x} NOT GLOB '{_SQLITE_UUID_GLOB}'"
    if target is T.JSON:
        return f"NOT json_valid({x})"
    raise UnsupportedChange(f"no check for {source.value} to {target.value}")  # pragma: no cover


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
