"""Columns and the logical column types users ask for; each engine maps them to its own type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


# The portable identifier shape; engines add their own limits (length, reserved words).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True
    default: str | None = None
    primary_key: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.value,
            "nullable": self.nullable,
            "default": self.default,
            "primary_key": self.primary_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
        return cls(
            name=data["name"],
            type=ColumnType(data["type"]),
            nullable=bool(data.get("nullable", True)),
            default=data.get("default"),
            primary_key=bool(data.get("primary_key", False)),
        )


DEFAULT_COLUMNS: tuple[Column, ...] = (
    Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),
    Column("name", ColumnType.TEXT),
    Column("created_at", ColumnType.TIMESTAMP),
    Column("updated_at", ColumnType.TIMESTAMP),
)
