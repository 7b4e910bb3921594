"""The changes a table can undergo, each a value that maps the table's schema before it to the schema
after it (:meth:`Change.apply`), refusing what it cannot do to that schema.

The Table aggregate validates a change by applying it to the intended schema (confirmed plus the
changes still in flight) when it is accepted, and the saga applies it again to the confirmed schema
when it runs: the two agree unless a change ahead of it was rejected meanwhile, which the saga then
notices (see ``Table.premise``). Renames are part of the change (``column_renames``), never guessed from
a difference, so a rename is never mistaken for a drop and an add.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar

from schemasaga.domain.columns import IDENTIFIER, Column, Index, TableSchema, canonical_default
from schemasaga.domain.errors import (
    ColumnExists,
    ColumnNotFound,
    IllegalTransition,
    IndexExists,
    IndexNotFound,
    InvalidIndex,
    InvalidName,
    PrimaryKeyColumn,
    UnsupportedChange,
)


class OperationKind(StrEnum):
    CREATE_TABLE = "create_table"
    ADD_COLUMN = "add_column"
    REMOVE_COLUMN = "remove_column"
    DELETE_TABLE = "delete_table"
    REPAIR = "repair"
    ADOPT = "adopt"
    RENAME_TABLE = "rename_table"
    ALTER_COLUMN = "alter_column"
    ADD_INDEX = "add_index"
    DROP_INDEX = "drop_index"
    RESTORE_TABLE = "restore_table"
    RESTORE_COLUMN = "restore_column"
    PURGE_TRASH = "purge_trash"


TRASH_PREFIX = "_ssg_trash_"
"""The reserved prefix of trash tables: ``_ssg_trash_`` and 16 hex digits (27 characters, within every
engine's identifier limit). Drift never reports such a table as unmanaged."""


def trash_name(token: str) -> str:
    """The trash table named by 16 hex digits of ``token`` (a uuid's hex)."""
    return TRASH_PREFIX + token[:16]


def is_trash_name(name: str) -> bool:
    return name.lower().startswith(TRASH_PREFIX)


def check_name(name: str, *, kind: str) -> None:
    if not name or not IDENTIFIER.fullmatch(name):
        raise InvalidName(
            f"{kind} name {name!r} must start with a letter or underscore and contain only "
            "letters, digits and underscores"
        )
    if kind == "table" and is_trash_name(name):
        raise InvalidName(f"table name {name!r} is reserved for the trash ({TRASH_PREFIX}...)")


def check_column(column: Column) -> Column:
    """The column with its default in canonical form; refuses an invalid name or default."""
    check_name(column.name, kind="column")
    return replace(column, default=canonical_default(column.type, column.default))


@dataclass(frozen=True, slots=True)
class Change:
    kind: ClassVar[OperationKind]

    def apply(self, schema: TableSchema) -> TableSchema:
        """The schema after this change; a domain error when the change does not fit ``schema``."""
        raise NotImplementedError

    @property
    def column_renames(self) -> dict[str, str]:
        """Columns this change renames: old name to new name."""
        return {}

    @property
    def columns(self) -> tuple[Column, ...]:
        """The columns the change is about (the created table's, the added or removed one)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class CreateTable(Change):
    kind = OperationKind.CREATE_TABLE
    schema: TableSchema

    def apply(self, schema: TableSchema) -> TableSchema:
        return self.schema

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.schema.columns

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "schema": self.schema.to_dict()}


@dataclass(frozen=True, slots=True)
class AddColumn(Change):
    kind = OperationKind.ADD_COLUMN
    column: Column

    def apply(self, schema: TableSchema) -> TableSchema:
        if schema.column_named(self.column.name) is not None:
            raise ColumnExists(
                f"column {self.column.name!r} already exists (or is being added) in {schema.name!r}"
            )
        if self.column.primary_key:
            raise PrimaryKeyColumn("a new column cannot be a primary key")
        return schema.with_columns((*schema.columns, self.column))

    @property
    def columns(self) -> tuple[Column, ...]:
        return (self.column,)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "column": self.column.to_dict()}


@dataclass(frozen=True, slots=True)
class RemoveColumn(Change):
    kind = OperationKind.REMOVE_COLUMN
    column: Column  # as it was
    # The trash table its values are copied to first, keyed by ``key`` (the primary key); "": dropped.
    trash: str = ""
    key: tuple[Column, ...] = ()
    retention_s: int = 0

    def apply(self, schema: TableSchema) -> TableSchema:
        current = schema.column(self.column.name)
        if current is None:
            raise ColumnNotFound(f"table {schema.name!r} has no column {self.column.name!r}")
        if current.primary_key:
            raise PrimaryKeyColumn(f"column {self.column.name!r} is the primary key and cannot be removed")
        used = [i.name for i in schema.indexes if self.column.name in i.columns]
        if used:
            raise UnsupportedChange(
                f"column {self.column.name!r} is part of index(es) {', '.join(used)}: drop them first"
            )
        return schema.with_columns(tuple(c for c in schema.columns if c.name != self.column.name))

    @property
    def columns(self) -> tuple[Column, ...]:
        return (self.column,)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "column": self.column.to_dict()}
        if self.trash:
            data |= _trash_dict(self.trash, self.key, self.retention_s)
        return data


@dataclass(frozen=True, slots=True)
class AlterColumn(Change):
    """Rename a column, change its type, nullability, default or uniqueness (any of them at once)."""

    kind = OperationKind.ALTER_COLUMN
    name: str  # the column's name before the change
    column: Column  # the column after it

    def apply(self, schema: TableSchema) -> TableSchema:
        current = schema.column(self.name)
        if current is None:
            raise ColumnNotFound(f"table {schema.name!r} has no column {self.name!r}")
        if current.primary_key or self.column.primary_key:
            if current != self.column:
                raise PrimaryKeyColumn(
                    f"column {self.name!r} is (part of) the primary key, which cannot be changed"
                )
        if current == self.column:
            raise UnsupportedChange(f"column {self.name!r} already is as asked: nothing to change")
        if (
            self.column.name.lower() != self.name.lower()
            and schema.column_named(self.column.name) is not None
        ):
            raise ColumnExists(f"table {schema.name!r} already has a column {self.column.name!r}")
        columns = tuple(self.column if c.name == self.name else c for c in schema.columns)
        indexes = tuple(
            replace(i, columns=tuple(self.column.name if n == self.name else n for n in i.columns))
            for i in schema.indexes
        )
        return replace(schema, columns=columns, indexes=indexes)

    @property
    def column_renames(self) -> dict[str, str]:
        return {self.name: self.column.name} if self.name != self.column.name else {}

    @property
    def columns(self) -> tuple[Column, ...]:
        return (self.column,)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "column": self.column.to_dict()}


@dataclass(frozen=True, slots=True)
class RenameTable(Change):
    kind = OperationKind.RENAME_TABLE
    name: str  # the new name

    def apply(self, schema: TableSchema) -> TableSchema:
        check_name(self.name, kind="table")
        if self.name == schema.name:
            raise UnsupportedChange(f"the table is called {self.name!r} already")
        return replace(schema, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name}


@dataclass(frozen=True, slots=True)
class AddIndex(Change):
    kind = OperationKind.ADD_INDEX
    index: Index

    def apply(self, schema: TableSchema) -> TableSchema:
        check_name(self.index.name, kind="index")
        if not self.index.columns:
            raise InvalidIndex("an index needs at least one column")
        if len({c.lower() for c in self.index.columns}) != len(self.index.columns):
            raise InvalidIndex(f"index {self.index.name!r} names a column twice")
        missing = [c for c in self.index.columns if schema.column(c) is None]
        if missing:
            raise ColumnNotFound(f"table {schema.name!r} has no column {', '.join(map(repr, missing))}")
        if schema.index(self.index.name) is not None:
            raise IndexExists(f"table {schema.name!r} already has an index {self.index.name!r}")
        same = next(
            (i for i in schema.indexes if i.columns == self.index.columns and i.unique == self.index.unique),
            None,
        )
        if same is not None:
            raise IndexExists(
                f"index {same.name!r} of {schema.name!r} already covers {list(self.index.columns)}"
            )
        return replace(schema, indexes=(*schema.indexes, self.index))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "index": self.index.to_dict()}


@dataclass(frozen=True, slots=True)
class DropIndex(Change):
    kind = OperationKind.DROP_INDEX
    index: Index  # as it was

    def apply(self, schema: TableSchema) -> TableSchema:
        if schema.index(self.index.name) is None:
            raise IndexNotFound(f"table {schema.name!r} has no index {self.index.name!r}")
        return replace(schema, indexes=tuple(i for i in schema.indexes if i.name != self.index.name))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "index": self.index.to_dict()}


@dataclass(frozen=True, slots=True)
class DeleteTable(Change):
    kind = OperationKind.DELETE_TABLE
    # The trash name the table is renamed to, kept ``retention_s`` seconds; "": dropped at once.
    trash: str = ""
    retention_s: int = 0

    def apply(self, schema: TableSchema) -> TableSchema:
        return schema

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value}
        if self.trash:
            data |= _trash_dict(self.trash, (), self.retention_s)
        return data


def _trash_dict(trash: str, key: tuple[Column, ...], retention_s: int) -> dict[str, Any]:
    return {"trash": trash, "key": [c.to_dict() for c in key], "retention_s": retention_s}


@dataclass(frozen=True, slots=True)
class RestoreTable(Change):
    """Bring a trashed table back under ``name`` (the trash entry ``trash_id``, physical ``trash``)."""

    kind = OperationKind.RESTORE_TABLE
    trash_id: str
    trash: str
    name: str

    def apply(self, schema: TableSchema) -> TableSchema:
        return replace(schema, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "trash_id": self.trash_id, "trash": self.trash, "name": self.name}


@dataclass(frozen=True, slots=True)
class RestoreColumn(Change):
    """Add a trashed column back (``column``: as it was, or renamed) and fill it from the trash table,
    matching rows on ``key``; ``source`` is the column's name in the trash table."""

    kind = OperationKind.RESTORE_COLUMN
    trash_id: str
    trash: str
    column: Column
    source: str
    key: tuple[Column, ...]

    def apply(self, schema: TableSchema) -> TableSchema:
        return AddColumn(self.column).apply(schema)

    @property
    def columns(self) -> tuple[Column, ...]:
        return (self.column,)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "trash_id": self.trash_id,
            "trash": self.trash,
            "column": self.column.to_dict(),
            "source": self.source,
            "key": [c.to_dict() for c in self.key],
        }


@dataclass(frozen=True, slots=True)
class PurgeTrash(Change):
    """Drop a trash table for good (the schema stays as it is)."""

    kind = OperationKind.PURGE_TRASH
    trash_id: str
    trash: str

    def apply(self, schema: TableSchema) -> TableSchema:
        return schema

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "trash_id": self.trash_id, "trash": self.trash}


@dataclass(frozen=True, slots=True)
class Repair(Change):
    """Bring the physical table back to the metadata (which stays as it is)."""

    kind = OperationKind.REPAIR

    def apply(self, schema: TableSchema) -> TableSchema:
        return schema

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value}


@dataclass(frozen=True, slots=True)
class Adopt(Change):
    """Take the live schema as metadata: what it is is known once the saga has read it."""

    kind = OperationKind.ADOPT

    def apply(self, schema: TableSchema) -> TableSchema:
        return schema

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value}


def change_from_dict(data: dict[str, Any]) -> Change:
    kind = OperationKind(data["kind"])
    match kind:
        case OperationKind.CREATE_TABLE:
            return CreateTable(TableSchema.from_dict(data["schema"]))
        case OperationKind.ADD_COLUMN:
            return AddColumn(Column.from_dict(data["column"]))
        case OperationKind.REMOVE_COLUMN:
            return RemoveColumn(
                Column.from_dict(data["column"]),
                trash=data.get("trash", ""),
                key=tuple(Column.from_dict(c) for c in data.get("key", [])),
                retention_s=int(data.get("retention_s", 0)),
            )
        case OperationKind.ALTER_COLUMN:
            return AlterColumn(data["name"], Column.from_dict(data["column"]))
        case OperationKind.RENAME_TABLE:
            return RenameTable(data["name"])
        case OperationKind.ADD_INDEX:
            return AddIndex(Index.from_dict(data["index"]))
        case OperationKind.DROP_INDEX:
            return DropIndex(Index.from_dict(data["index"]))
        case OperationKind.DELETE_TABLE:
            return DeleteTable(trash=data.get("trash", ""), retention_s=int(data.get("retention_s", 0)))
        case OperationKind.RESTORE_TABLE:
            return RestoreTable(data["trash_id"], data["trash"], data["name"])
        case OperationKind.RESTORE_COLUMN:
            return RestoreColumn(
                data["trash_id"],
                data["trash"],
                Column.from_dict(data["column"]),
                data["source"],
                tuple(Column.from_dict(c) for c in data["key"]),
            )
        case OperationKind.PURGE_TRASH:
            return PurgeTrash(data["trash_id"], data["trash"])
        case OperationKind.REPAIR:
            return Repair()
        case OperationKind.ADOPT:
            return Adopt()
    raise IllegalTransition(f"unknown change {kind}")  # pragma: no cover - the match is exhaustive


def inverse(change: Change, before: TableSchema) -> Change:
    """The change that takes the schema after ``change`` back to ``before`` (the compensation of a
    change that ran, and what an undo asks for)."""
    match change:
        case RenameTable():
            return RenameTable(before.name)
        case AlterColumn(name=name, column=column):
            previous = before.column(name)
            if previous is None:
                raise ColumnNotFound(f"table {before.name!r} has no column {name!r}")
            return AlterColumn(column.name, previous)
        case AddIndex(index=index):
            return DropIndex(index)
        case DropIndex(index=index):
            return AddIndex(index)
        case AddColumn(column=column):
            return RemoveColumn(column)
        case RemoveColumn(column=column):
            return AddColumn(column)
    raise UnsupportedChange(f"{change.kind.value} has no inverse change")
