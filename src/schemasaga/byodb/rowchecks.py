"""Checks of the existing rows before a change (run by ``ByodbAdapter.check_rows`` and ``apply_plan``
before any DDL): SQL conditions, per engine, that are true for a value a type change could not convert,
and the values as they will be after it (to find duplicates a new unique index would refuse).

PostgreSQL 15 has no ``pg_input_is_valid``: its conditions test the text with regular expressions and
ranges, inside ``CASE`` so that no cast can fail; MySQL/MariaDB use ``REGEXP``; SQLite, which has no
regular expressions, uses ``GLOB``, its date functions (which normalise an impossible date, so that it
differs) and JSON's number grammar. Only constants of ours and quoted identifiers appear in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemasaga.byodb.planner import Conversion, Sql, conversion, sqlite_copy
from schemasaga.domain.columns import ColumnType
from schemasaga.domain.errors import UnsupportedChange

T = ColumnType


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
        kind = Sql.of(engine).type(target)
        return f"{column}::{kind}"
    if engine == "sqlite":
        return sqlite_copy(column, source, target)
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
