"""The twelve logical column types, mapped to each engine's own type and back.

Choices worth knowing:

* ``timestamp`` is a date and time *without* a zone, ``datetime`` a moment *with* one: PostgreSQL
  ``timestamp`` / ``timestamptz``; MySQL ``DATETIME(6)`` / ``TIMESTAMP(6)`` (MySQL's TIMESTAMP is stored
  in UTC and converted with the session zone, so it is the zone-aware one, but its range ends in 2038);
  SQLite has no date types, the declared names ``TIMESTAMP`` / ``DATETIME`` keep them apart.
* ``text``: MySQL ``MEDIUMTEXT`` (16 MB; LONGTEXT would be mistaken for MariaDB's JSON without an
  extra catalog query on every inspection). ``string`` is ``VARCHAR(255)`` everywhere.
* ``decimal`` is ``NUMERIC(38, 10)`` everywhere (MySQL's bare DECIMAL would be DECIMAL(10, 0)).
* ``uuid``: native on PostgreSQL, ``CHAR(36)`` on MySQL/MariaDB and SQLite.
* ``json``: ``jsonb`` on PostgreSQL. On MariaDB ``JSON`` is an alias of ``LONGTEXT`` with a
  ``json_valid`` CHECK; inspection tells the two apart by that check.

Defaults (:func:`default_sql`) are the column's canonical JSON literal rendered as a SQL literal by the
connected dialect's own literal rendering (quotes doubled, backslashes escaped where the server takes
them as escapes), never pasted: numbers are re-printed
from their value, booleans are ``true``/``false`` on PostgreSQL and ``1``/``0`` elsewhere, JSON is
serialized, a ``datetime`` is its UTC time (MySQL/MariaDB: without the offset, read in the adapter's UTC
session). MySQL 8 (not MariaDB) refuses a literal default on TEXT and JSON columns; that is reported as
the server's error.

The reverse mapping (:func:`logical_from_raw`) works on type names as the catalogs print them and accepts
a family (any ``VARCHAR(n)`` is a ``string``, any ``NUMERIC(p, s)`` a ``decimal``); the exact type stays
visible in :attr:`LiveColumn.raw_type`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from schemasaga.domain.columns import ColumnType, canonical_default

T = ColumnType
_Factory = Callable[[], TypeEngine[Any]]

_TYPES: dict[str, dict[ColumnType, _Factory]] = {
    "postgresql": {
        T.INTEGER: postgresql.INTEGER,
        T.BIGINT: postgresql.BIGINT,
        T.TEXT: postgresql.TEXT,
        T.STRING: lambda: postgresql.VARCHAR(255),
        T.BOOLEAN: postgresql.BOOLEAN,
        T.FLOAT: postgresql.DOUBLE_PRECISION,
        T.DECIMAL: lambda: postgresql.NUMERIC(38, 10),
        T.DATE: postgresql.DATE,
        T.TIMESTAMP: lambda: postgresql.TIMESTAMP(timezone=False),
        T.DATETIME: lambda: postgresql.TIMESTAMP(timezone=True),
        T.JSON: postgresql.JSONB,
        T.UUID: postgresql.UUID,
    },
    "mysql": {
        T.INTEGER: mysql.INTEGER,
        T.BIGINT: mysql.BIGINT,
        T.TEXT: mysql.MEDIUMTEXT,
        T.STRING: lambda: mysql.VARCHAR(255),
        T.BOOLEAN: sqltypes.BOOLEAN,  # BOOL, i.e. TINYINT(1)
        T.FLOAT: mysql.DOUBLE,
        T.DECIMAL: lambda: mysql.DECIMAL(38, 10),
        T.DATE: mysql.DATE,
        T.TIMESTAMP: lambda: mysql.DATETIME(fsp=6),
        T.DATETIME: lambda: mysql.TIMESTAMP(fsp=6),
        T.JSON: mysql.JSON,
        T.UUID: lambda: mysql.CHAR(36),
    },
    "sqlite": {
        T.INTEGER: sqltypes.INTEGER,
        T.BIGINT: sqltypes.BIGINT,
        T.TEXT: sqltypes.TEXT,
        T.STRING: lambda: sqltypes.VARCHAR(255),
        T.BOOLEAN: sqltypes.BOOLEAN,
        T.FLOAT: sqltypes.REAL,
        T.DECIMAL: lambda: sqltypes.NUMERIC(38, 10),
        T.DATE: sqltypes.DATE,
        T.TIMESTAMP: sqltypes.TIMESTAMP,
        T.DATETIME: sqltypes.DATETIME,
        T.JSON: sqltypes.JSON,
        T.UUID: lambda: sqltypes.CHAR(36),
    },
}

_DIALECTS: dict[str, Callable[[], Dialect]] = {
    "postgresql": postgresql.dialect,
    "mysql": mysql.dialect,
    "sqlite": sqlite.dialect,
}

# Reverse mapping on normalised type names: upper case, single spaces, "(...)" arguments removed
# (kept apart in the second element when they matter).
_REVERSE: dict[str, dict[str, ColumnType]] = {
    "postgresql": {
        "INTEGER": T.INTEGER,
        "INT": T.INTEGER,
        "INT4": T.INTEGER,
        "BIGINT": T.BIGINT,
        "INT8": T.BIGINT,
        "TEXT": T.TEXT,
        "CHARACTER VARYING": T.STRING,
        "VARCHAR": T.STRING,
        "BOOLEAN": T.BOOLEAN,
        "BOOL": T.BOOLEAN,
        "DOUBLE PRECISION": T.FLOAT,
        "FLOAT8": T.FLOAT,
        "NUMERIC": T.DECIMAL,
        "DECIMAL": T.DECIMAL,
        "DATE": T.DATE,
        "TIMESTAMP": T.TIMESTAMP,
        "TIMESTAMP WITHOUT TIME ZONE": T.TIMESTAMP,
        "TIMESTAMP WITH TIME ZONE": T.DATETIME,
        "TIMESTAMPTZ": T.DATETIME,
        "JSONB": T.JSON,
        "JSON": T.JSON,
        "UUID": T.UUID,
    },
    "mysql": {
        "INT": T.INTEGER,
        "INTEGER": T.INTEGER,
        "BIGINT": T.BIGINT,
        "TEXT": T.TEXT,
        "MEDIUMTEXT": T.TEXT,
        "LONGTEXT": T.TEXT,
        "VARCHAR": T.STRING,
        "BOOL": T.BOOLEAN,
        "BOOLEAN": T.BOOLEAN,
        "DOUBLE": T.FLOAT,
        "DOUBLE PRECISION": T.FLOAT,
        "DECIMAL": T.DECIMAL,
        "NUMERIC": T.DECIMAL,
        "DATE": T.DATE,
        "DATETIME": T.TIMESTAMP,
        "TIMESTAMP": T.DATETIME,
        "JSON": T.JSON,
        "UUID": T.UUID,  # MariaDB >= 10.7 native type
    },
    "sqlite": {
        "INTEGER": T.INTEGER,
        "INT": T.INTEGER,
        "BIGINT": T.BIGINT,
        "TEXT": T.TEXT,
        "VARCHAR": T.STRING,
        "BOOLEAN": T.BOOLEAN,
        "BOOL": T.BOOLEAN,
        "REAL": T.FLOAT,
        "FLOAT": T.FLOAT,
        "DOUBLE": T.FLOAT,
        "NUMERIC": T.DECIMAL,
        "DECIMAL": T.DECIMAL,
        "DATE": T.DATE,
        "TIMESTAMP": T.TIMESTAMP,
        "DATETIME": T.DATETIME,
        "JSON": T.JSON,
        "UUID": T.UUID,
    },
}

_ARGS = re.compile(r"\s*\(([^)]*)\)")
_MYSQL_SUFFIX = re.compile(r"\s+(CHARACTER SET|CHARSET|COLLATE)\s.*$")


def _check_engine(engine: str) -> None:
    if engine not in _TYPES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(_TYPES)}")


def type_for(engine: str, column_type: ColumnType) -> TypeEngine[Any]:
    """The SQLAlchemy type that ``engine`` uses for the logical ``column_type``."""
    _check_engine(engine)
    return _TYPES[engine][ColumnType(column_type)]()


def dialect_for(engine: str) -> Dialect:
    _check_engine(engine)
    return _DIALECTS[engine]()


def render(engine: str, column_type: ColumnType, *, dialect: Dialect | None = None) -> str:
    """The DDL spelling of ``column_type`` on ``engine``."""
    return type_for(engine, column_type).compile(dialect=dialect or dialect_for(engine))


def logical_from_raw(engine: str, raw: str) -> ColumnType | None:
    """The logical type of a column whose catalog type name is ``raw``; ``None`` if it is none of ours."""
    _check_engine(engine)
    text = " ".join(raw.upper().split())
    if engine == "mysql":
        text = _MYSQL_SUFFIX.sub("", text)
        if text.endswith(" UNSIGNED") or text.endswith(" ZEROFILL"):
            return None  # another range than ours
    args = [a.strip() for m in _ARGS.finditer(text) for a in m.group(1).split(",")]
    base = " ".join(_ARGS.sub(" ", text).split())
    if engine == "mysql" and base == "TINYINT":
        return T.BOOLEAN if args == ["1"] else None
    if base in ("CHAR", "CHARACTER", "NCHAR"):
        return T.UUID if args == ["36"] and engine != "postgresql" else None
    return _REVERSE[engine].get(base)


def logical_type(engine: str, reflected: TypeEngine[Any]) -> ColumnType | None:
    """The logical type of a SQLAlchemy type (as reflected by ``engine``); ``None`` if it is none of ours."""
    _check_engine(engine)
    try:
        raw = reflected.compile(dialect=dialect_for(engine))
    except Exception:  # NullType and other types that have no DDL on this engine
        return None
    return logical_from_raw(engine, raw)


TYPE_TABLE: Mapping[ColumnType, Mapping[str, str]] = MappingProxyType(
    {t: MappingProxyType({engine: render(engine, t) for engine in _TYPES}) for t in ColumnType}
)
"""DDL type per logical type and engine, e.g. ``TYPE_TABLE[ColumnType.JSON]["postgresql"] == "JSONB"``."""


def default_sql(engine: str, column_type: ColumnType, value: Any, dialect: Dialect) -> str:
    """The SQL literal of the default ``value`` (made canonical first: :class:`InvalidDefault` if it is
    no value of the type) for a ``column_type`` column on ``engine``, as ``dialect`` (the connected one:
    it knows the server's escaping) renders it. A ``%`` is written once: a caller that runs the statement
    through a driver that formats parameters doubles it."""
    _check_engine(engine)
    kind = ColumnType(column_type)
    canonical = canonical_default(kind, value)
    if canonical is None:
        raise ValueError("no default to render")
    t = ColumnType
    if kind in (t.INTEGER, t.BIGINT):
        return str(int(canonical))  # type: ignore[arg-type]
    if kind is t.FLOAT:
        number = float(canonical)  # type: ignore[arg-type]
        assert math.isfinite(number)
        return repr(number)
    if kind is t.DECIMAL:
        return format(Decimal(str(canonical)), "f")
    if kind is t.BOOLEAN:
        if engine == "postgresql":
            return "true" if canonical else "false"
        return "1" if canonical else "0"
    if kind is t.JSON:
        text = json.dumps(canonical, ensure_ascii=False, separators=(", ", ": "))
    elif kind is t.DATETIME and engine == "mysql":
        text = str(canonical).removesuffix("+00:00")  # canonical: UTC
    else:
        text = str(canonical)
    compiler = dialect.statement_compiler(dialect, None)
    literal = str(compiler.render_literal_value(text, sqltypes.String()))
    if dialect.paramstyle in ("format", "pyformat"):
        # The compiler doubles "%" for the driver's parameter formatting: the statement shows it once
        # (the adapter doubles every "%" of a statement when it runs it).
        literal = literal.replace("%%", "%")
    return literal
