"""A table's schema as the metadata records it: columns, their logical types and defaults, indexes and the
primary key. Each engine maps the logical types to its own (``byodb.types``).

A column's ``default`` is a JSON literal of the column's type, kept in a canonical form
(:func:`canonical_default`) so that a default read back from a database compares equal to the one asked
for: ``"1.50"`` and ``1.5`` are one decimal default, ``"2024-01-01T00:00:00+02:00"`` and
``"2023-12-31 22:00:00+00:00"`` one ``datetime`` default. ``None`` is no default (a JSON ``null``
default is not supported: a nullable column without a default is null already).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from uuid import UUID

from schemasaga.domain.errors import InvalidColumn, InvalidDefault


class ColumnType(StrEnum):
    INTEGER = "integer"
    BIGINT = "bigint"
    TEXT = "text"
    STRING = "string"
    BOOLEAN = "boolean"
    FLOAT = "float"
    DECIMAL = "decimal"
    DATE = "date"
    TIMESTAMP = "timestamp"
    DATETIME = "datetime"
    JSON = "json"
    UUID = "uuid"


# A stored type's value, checked as ColumnType(value) checks it (a KeyError for an unknown one).
_TYPE_VALUES: dict[str, str] = {t.value: t.value for t in ColumnType}

# The portable identifier shape; engines add their own limits (length, reserved words).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

STRING_LENGTH = 255
_RANGES = {ColumnType.INTEGER: 2**31, ColumnType.BIGINT: 2**63}
# DECIMAL is NUMERIC(38, 10) on every engine: 28 digits before the point, 10 after.
_DECIMAL_LIMIT = Decimal(10) ** 28
_DECIMAL_QUANTUM = Decimal("1e-10")

JsonLiteral = str | int | float | bool | list[Any] | dict[str, Any]


def column_type(raw: str) -> ColumnType:
    """The logical type called ``raw``: :class:`InvalidColumn` names the supported ones otherwise."""
    try:
        return ColumnType(raw)
    except ValueError:
        supported = ", ".join(t.value for t in ColumnType)
        raise InvalidColumn(f"unknown column type {raw!r}; supported: {supported}") from None


def canonical_default(kind: ColumnType, value: Any) -> JsonLiteral | None:
    """``value`` as the canonical default of a column of type ``kind`` (``None``: no default).

    Raises :class:`InvalidDefault` when it is no value of that type (``"abc"`` for an integer)."""
    if value is None:
        return None
    try:
        result: JsonLiteral = _CANONICAL[kind](value)
    except (ValueError, TypeError, InvalidOperation, ArithmeticError) as exc:
        reason = f": {exc}" if str(exc) else ""
        raise InvalidDefault(f"default {value!r} is not a {kind.value} value{reason}") from None
    return result


def _integer(kind: ColumnType) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("a whole number is expected")
        limit = _RANGES[kind]
        if not -limit <= value < limit:
            raise ValueError(f"out of the {kind.value} range")
        return value

    return check


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a number is expected")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError("not a finite number")
    return result


def _decimal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("a number, or a string of one, is expected")
    number = Decimal(str(value).strip())
    if not number.is_finite() or abs(number) >= _DECIMAL_LIMIT:
        raise ValueError("out of the decimal range (28 digits before the point)")
    if number != number.quantize(_DECIMAL_QUANTUM):
        raise ValueError("more than 10 digits after the point")
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false is expected")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string is expected")
    if "\x00" in value:
        raise ValueError("a NUL character cannot be stored")
    return value


def _string(value: Any) -> str:
    text = _text(value)
    if len(text) > STRING_LENGTH:
        raise ValueError(f"longer than {STRING_LENGTH} characters")
    return text


def _date(value: Any) -> str:
    return date.fromisoformat(_text(value)).isoformat()


def _timestamp(value: Any) -> str:
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is not None:
        raise ValueError("a timestamp has no time zone (use a datetime column)")
    return moment.isoformat(sep=" ")


def _datetime(value: Any) -> str:
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError("a datetime needs a time zone offset")
    return moment.astimezone(UTC).isoformat(sep=" ")


def _json(value: Any) -> JsonLiteral:
    """A JSON default as the core database gives it back: events are ``jsonb``, which orders an object's
    keys (shorter first, then by their bytes) and writes numbers as ``numeric`` (``1e+16`` comes back as
    the integer ``10000000000000000``, ``-0.0`` as ``0.0``). The saga plans its DDL again from the recorded
    event and compares: a default kept in any other form would plan another statement."""
    if not isinstance(value, str | int | float | bool | list | dict):
        raise TypeError("a JSON value is expected")
    result: JsonLiteral = _jsonb_value(value)
    return result


def _jsonb_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        if value == 0:
            return 0.0
        return int(value) if "e+" in repr(value) else value
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a NUL character cannot be stored")
        return value
    if isinstance(value, list):
        return [_jsonb_value(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("an object's keys are strings")
        return {key: _jsonb_value(value[key]) for key in sorted(value, key=_jsonb_key_order)}
    raise TypeError("a JSON value is expected")


def _jsonb_key_order(key: str) -> tuple[int, bytes]:
    if "\x00" in key:
        raise ValueError("a NUL character cannot be stored")
    encoded = key.encode()
    return len(encoded), encoded


def _uuid(value: Any) -> str:
    return str(UUID(_text(value)))


_CANONICAL: dict[ColumnType, Any] = {
    ColumnType.INTEGER: _integer(ColumnType.INTEGER),
    ColumnType.BIGINT: _integer(ColumnType.BIGINT),
    ColumnType.TEXT: _text,
    ColumnType.STRING: _string,
    ColumnType.BOOLEAN: _boolean,
    ColumnType.FLOAT: _float,
    ColumnType.DECIMAL: _decimal,
    ColumnType.DATE: _date,
    ColumnType.TIMESTAMP: _timestamp,
    ColumnType.DATETIME: _datetime,
    ColumnType.JSON: _json,
    ColumnType.UUID: _uuid,
}


# The members by their values: Column.from_dict looks a type up here before it calls ColumnType(value).
_TYPES_BY_VALUE: dict[str, ColumnType] = {t.value: t for t in ColumnType}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True
    # A canonical JSON literal of the column's type (see canonical_default); None: no default.
    default: Any = None
    primary_key: bool = False
    # Whether the column's values are unique on their own (a unique index on it alone).
    unique: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.value,
            "nullable": self.nullable,
            "default": self.default,
            "primary_key": self.primary_key,
            "unique": self.unique,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
        raw = data["type"]
        # The member by a dict look-up; ColumnType(raw), a tenth of loading a column, only for its error.
        member = _TYPES_BY_VALUE.get(raw) if isinstance(raw, str) else None
        return cls(
            name=data["name"],
            type=member or ColumnType(raw),
            nullable=bool(data.get("nullable", True)),
            default=data.get("default"),
            primary_key=bool(data.get("primary_key", False)),
            unique=bool(data.get("unique", False)),
        )

    @staticmethod
    def normal_dict(data: dict[str, Any]) -> dict[str, Any]:
        """``Column.from_dict(data).to_dict()`` without building the column: for lists of many."""
        return {
            "name": data["name"],
            "type": _TYPE_VALUES[data["type"]],
            "nullable": bool(data.get("nullable", True)),
            "default": data.get("default"),
            "primary_key": bool(data.get("primary_key", False)),
            "unique": bool(data.get("unique", False)),
        }

    @property
    def effective_nullable(self) -> bool:
        """A primary-key column is never nullable, whatever was asked."""
        return self.nullable and not self.primary_key


@dataclass(frozen=True, slots=True)
class Index:
    """An index of the table, on one column or more, in order."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "columns": list(self.columns), "unique": self.unique}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Index:
        return cls(name=data["name"], columns=tuple(data["columns"]), unique=bool(data.get("unique", False)))

    @staticmethod
    def normal_dict(data: dict[str, Any]) -> dict[str, Any]:
        """``Index.from_dict(data).to_dict()`` without building the index."""
        return {
            "name": data["name"],
            "columns": list(data["columns"]),
            "unique": bool(data.get("unique", False)),
        }


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's name, columns (in the order they were added) and indexes (in the order they were added)."""

    name: str
    columns: tuple[Column, ...] = ()
    indexes: tuple[Index, ...] = field(default=())

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.primary_key)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def column_named(self, name: str) -> Column | None:
        """The column called ``name`` in any letter case (names are unique regardless of case)."""
        lowered = name.lower()
        for c in self.columns:  # a loop, not next() over a generator: every event of a table asks
            if c.name.lower() == lowered:
                return c
        return None

    def index(self, name: str) -> Index | None:
        lowered = name.lower()
        return next((i for i in self.indexes if i.name.lower() == lowered), None)

    def with_columns(self, columns: tuple[Column, ...]) -> TableSchema:
        return TableSchema(self.name, columns, self.indexes)  # not replace(): a tenth of a column's addition

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [c.to_dict() for c in self.columns],
            "indexes": [i.to_dict() for i in self.indexes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableSchema:
        return cls(
            name=data["name"],
            columns=tuple(Column.from_dict(c) for c in data["columns"]),
            indexes=tuple(Index.from_dict(i) for i in data.get("indexes", [])),
        )


# The shortest identifier limit of the three engines (PostgreSQL's 63 bytes): a generated name fits all.
PORTABLE_NAME_LIMIT = 63


def index_name(table: str, columns: tuple[str, ...], *, unique: bool) -> str:
    """A portable name for an index given none: ``<table>_<columns>_key`` for a unique one, ``_idx``
    otherwise (PostgreSQL's own convention), cut to 63 characters with a short digest of the whole name
    when too long, so that two long names stay apart."""
    name = f"{table}_{'_'.join(columns)}_{'key' if unique else 'idx'}"
    if len(name) <= PORTABLE_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: PORTABLE_NAME_LIMIT - 9]}_{digest}"


DEFAULT_COLUMNS: tuple[Column, ...] = (
    Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),
    Column("name", ColumnType.TEXT),
    Column("created_at", ColumnType.TIMESTAMP),
    Column("updated_at", ColumnType.TIMESTAMP),
)
