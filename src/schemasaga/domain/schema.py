"""The schema model: a table as it physically exists (its live schema), and the one comparison of it
with what the metadata says it should be.

Every place that asks "does the live table match?" calls :func:`diff`: a saga's verification step,
drift, repair, adopt and the BYODB adapter's idempotency checks. It answers typed differences, so
each caller decides what matters to it (a verification looks only at the column its step changed,
a repair refuses the differences it cannot fix without risking data) while no two callers can
disagree on what differs.

Matching columns: a column of the metadata takes the live column of its exact name, else one whose name
differs only in letter case (reported as ``name_mismatch``: renamed behind our back, or a twin
on PostgreSQL, where ``age`` and ``Age`` are two columns). A primary-key column is never nullable,
whatever an engine reports for it (SQLite's ``INTEGER PRIMARY KEY`` inspects as nullable unless
``NOT NULL`` is declared), so nullability is compared as it takes effect.

Defaults: the metadata's default is a canonical JSON literal (``columns.canonical_default``); the live
default is one too when the engine's default is a literal of the column's type, an :class:`Expression`
otherwise (``nextval(...)``, ``now()``), ``None`` when there is none. They are compared as values, so an
expression never equals a literal.

Uniqueness and indexes: a column's ``unique`` is a unique index (or constraint) on that column alone,
other than the primary key, whatever its name. ``diff`` given a sequence of columns compares each
column's ``unique`` with :attr:`LiveColumn.unique` and no indexes. Given a :class:`TableSchema` it also
compares the indexes, in this order:

1. each index of the metadata takes the live index of its name (in any letter case where the engine
   folds names, MySQL/MariaDB and SQLite; exactly on PostgreSQL); columns (in order), uniqueness and
   validity must agree (``index_mismatch``), and one not found is ``missing_index``;
2. each column then takes, for its uniqueness, one valid unique live index on it alone among those
   left (so a metadata index that spells a column's uniqueness as an index is not reported twice);
3. the live indexes still left are ``extra_index``.

:meth:`LiveTable.to_schema` follows the same rule backwards: a column is unique when a valid unique index
on it alone exists, the first such index (in name order) expresses that and is not repeated among the
indexes; every other valid index is kept, in name order. Invalid indexes (PostgreSQL leaves one behind a
failed ``CREATE INDEX CONCURRENTLY``) are not tracked. So ``diff(live.to_schema(), live)`` is empty for
every table that can be tracked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemasaga.domain.columns import Column, ColumnType, Index, TableSchema


@dataclass(frozen=True, slots=True)
class Expression:
    """A live default that is not a literal of its column's type (``now()``, ``nextval('s')``), as the
    engine spells it."""

    raw: str

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True, slots=True)
class LiveColumn:
    """A column as it physically exists; ``type`` is ``None`` when it maps to none of the logical types.

    ``default``: a canonical JSON literal (see ``columns.canonical_default``), an :class:`Expression`, or
    ``None`` (no default). ``unique``: a valid unique index or constraint on this column alone exists,
    other than the primary key."""

    name: str
    type: ColumnType | None
    raw_type: str
    nullable: bool
    primary_key: bool
    default: Any = None
    unique: bool = False

    @property
    def effective_nullable(self) -> bool:
        return self.nullable and not self.primary_key

    @property
    def shown_type(self) -> str:
        """The logical type's name, else the engine's own spelling."""
        return self.type.value if self.type is not None else self.raw_type

    def to_column(self) -> Column:
        """The metadata column that describes this live one (adopting it); its type must be a logical one
        and its default a literal (``ValueError`` otherwise)."""
        if self.type is None:
            raise ValueError(
                f"column {self.name!r} has type {self.raw_type}, which is none of the logical types"
            )
        if isinstance(self.default, Expression):
            raise ValueError(
                f"column {self.name!r} has default {self.default.raw}, which is an expression, not a literal"
            )
        return Column(
            name=self.name,
            type=self.type,
            nullable=self.effective_nullable,
            default=self.default,
            primary_key=self.primary_key,
            unique=self.unique,
        )


@dataclass(frozen=True, slots=True)
class LiveIndex:
    """An index as it physically exists, other than the primary key's: its columns in order, whether it
    is unique, and whether it is usable (PostgreSQL marks an index left by a failed concurrent build
    invalid: it enforces nothing)."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    valid: bool = True

    def shape(self) -> dict[str, Any]:
        out: dict[str, Any] = {"columns": list(self.columns), "unique": self.unique}
        if not self.valid:
            out["valid"] = False
        return out


@dataclass(frozen=True, slots=True)
class LiveTable:
    """A table as it physically exists. ``fold_case``: whether the engine takes two column names that
    differ only in letter case for one column (MySQL/MariaDB and SQLite do; PostgreSQL does not); the
    same engines compare index names that way. ``indexes``: every index but the primary key's."""

    name: str
    columns: tuple[LiveColumn, ...]
    fold_case: bool = True
    indexes: tuple[LiveIndex, ...] = ()

    def column(self, name: str) -> LiveColumn | None:
        """The column called exactly ``name``, else one whose name differs only in case."""
        exact = next((c for c in self.columns if c.name == name), None)
        if exact is not None:
            return exact
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    def is_column(self, live_name: str, name: str) -> bool:
        """Whether the live column ``live_name`` is, for this engine, the column called ``name``: a step
        that drops or checks an absence acts on that column only, never on a twin it did not make."""
        return live_name == name or (self.fold_case and live_name.lower() == name.lower())

    def index(self, name: str) -> LiveIndex | None:
        """The index called ``name`` (in any letter case where the engine folds names)."""
        return next((i for i in self.indexes if self._same_name(i.name, name)), None)

    def _same_name(self, live_name: str, name: str) -> bool:
        return live_name == name or (self.fold_case and live_name.lower() == name.lower())

    def _same_columns(self, live: Sequence[str], columns: Sequence[str]) -> bool:
        return len(live) == len(columns) and all(
            self._same_name(a, b) for a, b in zip(live, columns, strict=True)
        )

    def to_schema(self) -> TableSchema:
        """The metadata that describes this table (tracking or adopting it), by the rule of the module
        docstring. ``ValueError`` when a column cannot be adopted (:meth:`LiveColumn.to_column`) or an
        index is on something other than plain columns (an expression)."""
        columns = tuple(c.to_column() for c in self.columns)
        names = {c.name for c in self.columns}
        indexes = sorted((i for i in self.indexes if i.valid), key=lambda i: (i.name.lower(), i.name))
        for column in self.columns:
            if column.unique:
                spelled = next((i for i in indexes if i.unique and i.columns == (column.name,)), None)
                if spelled is not None:
                    indexes.remove(spelled)
        for index in indexes:
            if not set(index.columns) <= names:
                raise ValueError(
                    f"index {index.name!r} is on {', '.join(index.columns)}, not only on columns"
                )
        return TableSchema(
            name=self.name,
            columns=columns,
            indexes=tuple(Index(i.name, i.columns, unique=i.unique) for i in indexes),
        )


class DifferenceKind(StrEnum):
    MISSING_TABLE = "missing_table"
    TABLE_NAME_MISMATCH = "table_name_mismatch"
    MISSING_COLUMN = "missing_column"
    EXTRA_COLUMN = "extra_column"
    NAME_MISMATCH = "name_mismatch"
    TYPE_MISMATCH = "type_mismatch"
    NULLABILITY_MISMATCH = "nullability_mismatch"
    PRIMARY_KEY_MISMATCH = "primary_key_mismatch"
    DEFAULT_MISMATCH = "default_mismatch"
    UNIQUE_MISMATCH = "unique_mismatch"
    MISSING_INDEX = "missing_index"
    EXTRA_INDEX = "extra_index"
    INDEX_MISMATCH = "index_mismatch"
    # Not found by diff: a drift scan reports it for a table it cannot read (a view, no privilege).
    UNREADABLE = "unreadable"


# The differences that concern the whole table rather than one column.
_TABLE_KINDS = frozenset({DifferenceKind.MISSING_TABLE, DifferenceKind.TABLE_NAME_MISMATCH})
INDEX_KINDS = frozenset(
    {DifferenceKind.MISSING_INDEX, DifferenceKind.EXTRA_INDEX, DifferenceKind.INDEX_MISMATCH}
)
"""The differences about an index (``Difference.index`` names it; ``column`` is ``None``)."""


def _shown_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, Expression):
        return value.raw
    return json.dumps(value, ensure_ascii=False)


def _shown_index(shape: dict[str, Any]) -> str:
    kind = "a unique index" if shape.get("unique") else "an index"
    invalid = " (invalid)" if shape.get("valid") is False else ""
    return f"{kind} on ({', '.join(shape.get('columns', []))}){invalid}"


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the live table differs from the metadata.

    ``column`` is the column's name in the metadata, or the live name of an extra column; ``index``
    the index's name for the index kinds (its name in the metadata, or the live name of an extra
    index); ``expected`` is what the metadata says and ``actual`` what the database has (``None`` where
    nothing applies). For an index, each is ``{"columns": [...], "unique": bool}`` (plus ``"valid":
    false`` for an invalid live index); for a default, a JSON literal, an :class:`Expression` (actual
    only) or ``None`` for no default."""

    kind: DifferenceKind
    column: str | None = None
    expected: Any = None
    actual: Any = None
    detail: str | None = None
    index: str | None = None

    def concerns(self, column: str, *, fold_case: bool) -> bool:
        """Whether this difference is about the column called ``column`` in the metadata (a
        difference of the whole table is about every column, one of an index about its columns)."""
        if self.kind in _TABLE_KINDS:
            return True
        if self.kind in INDEX_KINDS:
            named = [c for side in (self.expected, self.actual) if side for c in side.get("columns", [])]
            return any(c == column or (fold_case and c.lower() == column.lower()) for c in named)
        if self.column is None:
            return False
        if self.kind is DifferenceKind.EXTRA_COLUMN:
            return self.column == column or (fold_case and self.column.lower() == column.lower())
        return self.column == column

    def concerns_index(self, index: str, *, fold_case: bool) -> bool:
        """Whether this difference is about the index called ``index`` (a difference of the whole
        table is about every index)."""
        if self.kind in _TABLE_KINDS:
            return True
        if self.kind not in INDEX_KINDS or self.index is None:
            return False
        return self.index == index or (fold_case and self.index.lower() == index.lower())

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape recorded in TableDriftDetected events and answered by the drift report.

        A default that is an expression is ``"actual_expression": "<its SQL>"`` instead of ``actual``
        (a JSON default can be any object, so no object shape could tell the two apart)."""
        out: dict[str, Any] = {"issue": self.kind.value}
        if self.column is not None:
            out["column"] = self.column
        if self.index is not None:
            out["index"] = self.index
        if self.kind in (
            DifferenceKind.EXTRA_COLUMN,
            DifferenceKind.NAME_MISMATCH,
            DifferenceKind.EXTRA_INDEX,
        ):
            out["actual"] = self.actual
        elif self.kind is DifferenceKind.MISSING_INDEX:
            out["expected"] = self.expected
        elif self.kind is DifferenceKind.DEFAULT_MISMATCH:
            out["expected"] = self.expected
            if isinstance(self.actual, Expression):
                out["actual_expression"] = self.actual.raw
            else:
                out["actual"] = self.actual
        elif self.kind is DifferenceKind.TABLE_NAME_MISMATCH or self.expected is not None:
            out["expected"], out["actual"] = self.expected, self.actual
        if self.detail is not None:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Difference:
        actual = data.get("actual")
        if "actual_expression" in data:
            actual = Expression(data["actual_expression"])
        return cls(
            kind=DifferenceKind(data["issue"]),
            column=data.get("column"),
            expected=data.get("expected"),
            actual=actual,
            detail=data.get("detail"),
            index=data.get("index"),
        )

    def describe(self) -> str:
        """One line for people (logs, error messages, the CLI)."""
        match self.kind:
            case DifferenceKind.MISSING_TABLE:
                return "the table is missing"
            case DifferenceKind.TABLE_NAME_MISMATCH:
                return f"its name is spelled {self.actual!r} (names are unique regardless of case)"
            case DifferenceKind.MISSING_COLUMN:
                return f"column {self.column!r} is missing"
            case DifferenceKind.EXTRA_COLUMN:
                return f"it has another column {self.column!r} ({self.actual})"
            case DifferenceKind.NAME_MISMATCH:
                return f"column {self.column!r} is spelled {self.actual!r}"
            case DifferenceKind.TYPE_MISMATCH:
                return f"column {self.column!r} has type {self.actual} instead of {self.expected}"
            case DifferenceKind.NULLABILITY_MISMATCH:
                allowed = "allows NULL" if self.actual else "is NOT NULL"
                return f"column {self.column!r} {allowed}"
            case DifferenceKind.PRIMARY_KEY_MISMATCH:
                key = "is" if self.actual else "is not"
                return f"column {self.column!r} {key} part of the primary key"
            case DifferenceKind.DEFAULT_MISMATCH:
                actual, expected = _shown_default(self.actual), _shown_default(self.expected)
                return f"column {self.column!r} has default {actual} instead of {expected}"
            case DifferenceKind.UNIQUE_MISMATCH:
                unique = "is" if self.actual else "is not"
                return f"column {self.column!r} {unique} unique"
            case DifferenceKind.MISSING_INDEX:
                return f"index {self.index!r}, {_shown_index(self.expected or {})}, is missing"
            case DifferenceKind.EXTRA_INDEX:
                return f"it has another index {self.index!r}, {_shown_index(self.actual or {})}"
            case DifferenceKind.INDEX_MISMATCH:
                actual, expected = _shown_index(self.actual or {}), _shown_index(self.expected or {})
                return f"index {self.index!r} is {actual} instead of {expected}"
            case DifferenceKind.UNREADABLE:
                return f"the table cannot be read ({self.detail})"


def describe(differences: Iterable[Difference]) -> str:
    return "; ".join(d.describe() for d in differences)


def _index_shape(index: Index) -> dict[str, Any]:
    return {"columns": list(index.columns), "unique": index.unique}


def diff(
    expected: Iterable[Column] | TableSchema, live: LiveTable | None, *, table: str | None = None
) -> list[Difference]:
    """How the live table ``live`` differs from a table called ``table`` with the ``expected``
    columns, or from the ``expected`` schema (then its indexes are compared too, and ``table`` defaults
    to its name); empty when they are the same (``live`` is ``None`` when no such table exists)."""
    if isinstance(expected, TableSchema):
        schema: TableSchema | None = expected
        columns = list(expected.columns)
    else:
        schema, columns = None, list(expected)
    if table is None:
        if schema is None:
            raise TypeError("diff of columns needs the table's name")
        table = schema.name
    if live is None:
        return [Difference(DifferenceKind.MISSING_TABLE)]
    differences: list[Difference] = []
    if live.name != table:
        differences.append(Difference(DifferenceKind.TABLE_NAME_MISMATCH, expected=table, actual=live.name))

    index_differences: list[Difference] = []
    left = list(live.indexes)
    if schema is not None:
        for index in schema.indexes:
            found = next((i for i in left if i.name == index.name), None) or next(
                (i for i in left if live._same_name(i.name, index.name)), None
            )
            if found is None:
                index_differences.append(
                    Difference(DifferenceKind.MISSING_INDEX, index=index.name, expected=_index_shape(index))
                )
                continue
            left.remove(found)
            if not (
                live._same_columns(found.columns, index.columns)
                and found.unique == index.unique
                and found.valid
            ):
                index_differences.append(
                    Difference(
                        DifferenceKind.INDEX_MISMATCH,
                        index=index.name,
                        expected=_index_shape(index),
                        actual=found.shape(),
                    )
                )

    unmatched = list(live.columns)
    for column in columns:
        found_column = next((c for c in unmatched if c.name == column.name), None) or next(
            (c for c in unmatched if c.name.lower() == column.name.lower()), None
        )
        if found_column is None:
            differences.append(Difference(DifferenceKind.MISSING_COLUMN, column.name))
            continue
        unmatched.remove(found_column)
        unique = found_column.unique
        if schema is not None:
            # Uniqueness is read from the indexes left over by step 1 (see the module docstring).
            spelling = next(
                (
                    i
                    for i in left
                    if i.unique and i.valid and live._same_columns(i.columns, (found_column.name,))
                ),
                None,
            )
            unique = spelling is not None
            if spelling is not None:
                left.remove(spelling)
        differences += compare_column(column, found_column, live_unique=unique)
    differences += [Difference(DifferenceKind.EXTRA_COLUMN, c.name, actual=c.shown_type) for c in unmatched]
    if schema is not None:
        index_differences += [
            Difference(DifferenceKind.EXTRA_INDEX, index=i.name, actual=i.shape()) for i in left
        ]
    return differences + index_differences


def compare_column(column: Column, live: LiveColumn, *, live_unique: bool | None = None) -> list[Difference]:
    """How the live column differs from the metadata's ``column`` (the two already matched by name).

    ``live_unique`` overrides :attr:`LiveColumn.unique` (``diff`` of a schema reads it from the indexes)."""
    differences: list[Difference] = []
    name = column.name
    if live.name != name:
        differences.append(Difference(DifferenceKind.NAME_MISMATCH, name, actual=live.name))
    if live.type != column.type:
        differences.append(
            Difference(DifferenceKind.TYPE_MISMATCH, name, expected=column.type.value, actual=live.shown_type)
        )
    nullable = column.nullable and not column.primary_key
    if live.effective_nullable != nullable:
        differences.append(
            Difference(
                DifferenceKind.NULLABILITY_MISMATCH, name, expected=nullable, actual=live.effective_nullable
            )
        )
    if live.primary_key != column.primary_key:
        differences.append(
            Difference(
                DifferenceKind.PRIMARY_KEY_MISMATCH,
                name,
                expected=column.primary_key,
                actual=live.primary_key,
            )
        )
    if not _same_default(column.default, live.default):
        differences.append(
            Difference(DifferenceKind.DEFAULT_MISMATCH, name, expected=column.default, actual=live.default)
        )
    unique = live.unique if live_unique is None else live_unique
    if unique != column.unique:
        differences.append(
            Difference(DifferenceKind.UNIQUE_MISMATCH, name, expected=column.unique, actual=unique)
        )
    return differences


def _same_default(expected: Any, actual: Any) -> bool:
    if isinstance(actual, Expression) or isinstance(expected, Expression):
        return bool(expected == actual)
    # JSON values compare as JSON: true is not 1 (Python says True == 1), 1.0 is 1.
    return bool(_typed(expected) == _typed(actual))


def _typed(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: _typed(v) for k, v in value.items()})
    return value
