"""The schema model: a table as it physically exists (its live schema), and the one comparison of it
with what the metadata says it should be.

Every place that asks "does the live table match?" calls :func:`diff`: a saga's verification step,
drift, repair, adopt and the BYODB adapter's idempotency checks. It answers typed differences, so
each caller decides what matters to it (a verification looks only at the column its step changed,
a repair refuses the differences it cannot fix without risking data) while no two callers can
disagree on what differs.

Matching: a column of the metadata takes the live column of its exact name, else one whose name
differs only in letter case (reported as ``name_mismatch``: renamed behind our back, or a twin
on PostgreSQL, where ``age`` and ``Age`` are two columns). A primary-key column is never nullable,
whatever an engine reports for it (SQLite's ``INTEGER PRIMARY KEY`` inspects as nullable unless
``NOT NULL`` is declared), so nullability is compared as it takes effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemasaga.domain.columns import Column, ColumnType


@dataclass(frozen=True, slots=True)
class LiveColumn:
    """A column as it physically exists; ``type`` is ``None`` when it maps to none of the logical types."""

    name: str
    type: ColumnType | None
    raw_type: str
    nullable: bool
    primary_key: bool

    @property
    def effective_nullable(self) -> bool:
        return self.nullable and not self.primary_key

    @property
    def shown_type(self) -> str:
        """The logical type's name, else the engine's own spelling."""
        return self.type.value if self.type is not None else self.raw_type

    def to_column(self) -> Column:
        """The metadata column that describes this live one (adopting it); its type must be a logical one."""
        if self.type is None:
            raise ValueError(
                f"column {self.name!r} has type {self.raw_type}, which is none of the logical types"
            )
        return Column(
            name=self.name, type=self.type, nullable=self.effective_nullable, primary_key=self.primary_key
        )


@dataclass(frozen=True, slots=True)
class LiveTable:
    """A table as it physically exists. ``fold_case``: whether the engine takes two column names that
    differ only in letter case for one column (MySQL/MariaDB and SQLite do; PostgreSQL does not)."""

    name: str
    columns: tuple[LiveColumn, ...]
    fold_case: bool = True

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


class DifferenceKind(StrEnum):
    MISSING_TABLE = "missing_table"
    TABLE_NAME_MISMATCH = "table_name_mismatch"
    MISSING_COLUMN = "missing_column"
    EXTRA_COLUMN = "extra_column"
    NAME_MISMATCH = "name_mismatch"
    TYPE_MISMATCH = "type_mismatch"
    NULLABILITY_MISMATCH = "nullability_mismatch"
    PRIMARY_KEY_MISMATCH = "primary_key_mismatch"
    # Not found by diff: a drift scan reports it for a table it cannot read (a view, no privilege).
    UNREADABLE = "unreadable"


# The differences that concern the whole table rather than one column.
_TABLE_KINDS = frozenset({DifferenceKind.MISSING_TABLE, DifferenceKind.TABLE_NAME_MISMATCH})


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the live table differs from the metadata.

    ``column`` is the column's name in the metadata, or the live name of an extra column; ``expected``
    is what the metadata says and ``actual`` what the database has (``None`` where nothing applies)."""

    kind: DifferenceKind
    column: str | None = None
    expected: Any = None
    actual: Any = None
    detail: str | None = None

    def concerns(self, column: str, *, fold_case: bool) -> bool:
        """Whether this difference is about the column called ``column`` in the metadata (a
        difference of the whole table is about every column)."""
        if self.kind in _TABLE_KINDS:
            return True
        if self.column is None:
            return False
        if self.kind is DifferenceKind.EXTRA_COLUMN:
            return self.column == column or (fold_case and self.column.lower() == column.lower())
        return self.column == column

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape recorded in TableDriftDetected events and answered by the drift report."""
        out: dict[str, Any] = {"issue": self.kind.value}
        if self.column is not None:
            out["column"] = self.column
        if self.kind in (DifferenceKind.EXTRA_COLUMN, DifferenceKind.NAME_MISMATCH):
            out["actual"] = self.actual
        elif self.kind is DifferenceKind.TABLE_NAME_MISMATCH or self.expected is not None:
            out["expected"], out["actual"] = self.expected, self.actual
        if self.detail is not None:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Difference:
        return cls(
            kind=DifferenceKind(data["issue"]),
            column=data.get("column"),
            expected=data.get("expected"),
            actual=data.get("actual"),
            detail=data.get("detail"),
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
            case DifferenceKind.UNREADABLE:
                return f"the table cannot be read ({self.detail})"


def describe(differences: Iterable[Difference]) -> str:
    return "; ".join(d.describe() for d in differences)


def diff(expected: Iterable[Column], live: LiveTable | None, *, table: str) -> list[Difference]:
    """How the live table ``live`` differs from a table called ``table`` with the ``expected``
    columns; empty when they are the same (``live`` is ``None`` when no such table exists)."""
    if live is None:
        return [Difference(DifferenceKind.MISSING_TABLE)]
    differences: list[Difference] = []
    if live.name != table:
        differences.append(Difference(DifferenceKind.TABLE_NAME_MISMATCH, expected=table, actual=live.name))
    unmatched = list(live.columns)
    for column in expected:
        found = next((c for c in unmatched if c.name == column.name), None) or next(
            (c for c in unmatched if c.name.lower() == column.name.lower()), None
        )
        if found is None:
            differences.append(Difference(DifferenceKind.MISSING_COLUMN, column.name))
            continue
        unmatched.remove(found)
        differences += compare_column(column, found)
    differences += [Difference(DifferenceKind.EXTRA_COLUMN, c.name, actual=c.shown_type) for c in unmatched]
    return differences


def compare_column(column: Column, live: LiveColumn) -> list[Difference]:
    """How the live column differs from the metadata's ``column`` (the two already matched by name)."""
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
    return differences
