"""Cheap inspection of the live schema: one or two catalog queries per look-up, per engine.

SQLAlchemy's ``inspect(...).get_columns`` + ``get_pk_constraint`` costs several queries (and on MariaDB
opens the table several times); every saga step inspects before acting, so these named queries read
exactly what a step needs. Table names are always bound parameters, never pasted into the SQL.

Table names are looked up case-insensitively (names are unique regardless of case, see ``identifiers``);
the live table reports the name as it is stored. What is read is the schema model's
:class:`~schemasaga.domain.schema.LiveTable`: columns with their defaults and uniqueness, and every index
but the primary key's.

Defaults are read as the engine prints them and parsed (:func:`parse_default`) into the canonical JSON
literal of the column's type (``columns.canonical_default``); anything that is not such a literal is an
:class:`~schemasaga.domain.schema.Expression`. PostgreSQL prints ``'abc'::text``, ``'-5'::integer``,
``1.5``, ``true``; MariaDB quotes string literals with backslash escapes (``'it\\'s'``), MySQL does not
quote them and flags expressions as ``DEFAULT_GENERATED``; SQLite keeps the default's text as declared.

An index column that is an expression is reported as ``(its SQL)``, a MySQL/MariaDB prefix part as
``column(length)``, and a partial index gains a last column ``WHERE <predicate>`` (SQLite: ``WHERE
(partial)``): such an index never equals one of the metadata, never makes a column unique, and cannot be
tracked. A unique constraint is read as the unique index that enforces it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, TextClause, text

from schemasaga.byodb.types import logical_from_raw
from schemasaga.domain.columns import ColumnType, JsonLiteral, canonical_default
from schemasaga.domain.errors import InvalidDefault
from schemasaga.domain.schema import Expression, LiveColumn, LiveIndex, LiveTable


class NotATable(Exception):
    """The name belongs to a view or another kind of relation."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name!r} exists but is a {kind}, not a table")
        self.name = name
        self.kind = kind


QUERIES: dict[str, TextClause] = {
    # PostgreSQL: the step's SET LOCAL timeouts and the relation in the first schema of the search path
    # with its columns and primary key, in one round trip. The LEFT JOIN keeps one row (so the settings
    # are applied) when the table is absent.
    "postgresql.inspect": text(
        """
        SELECT set_config('lock_timeout', coalesce(:lock, current_setting('lock_timeout')), true),
               set_config('statement_timeout',
                          coalesce(:statement, current_setting('statement_timeout')), true),
               t.relname, t.relkind, t.attname, t.raw_type, t.attnotnull, t.pk, t.dflt, t.indexes
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (
            SELECT c.relname, c.relkind, a.attname, a.attnum,
                   format_type(a.atttypid, a.atttypmod) AS raw_type,
                   a.attnotnull,
                   coalesce(a.attnum = ANY (i.indkey), false) AS pk,
                   pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS dflt,
                   -- the indexes but the primary key's, once per relation (on its first row):
                   -- [name, unique, valid, [column or (expression)..., WHERE predicate]]
                   CASE WHEN row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) = 1 THEN (
                       SELECT json_agg(json_build_array(
                                  ic.relname, x.indisunique, x.indisvalid,
                                  (SELECT json_agg(coalesce(ka.attname,
                                                            '(' || pg_catalog.pg_get_indexdef(
                                                                x.indexrelid, k.ord::int, true) || ')')
                                                   ORDER BY k.ord)
                                   FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                                   LEFT JOIN pg_catalog.pg_attribute ka
                                          ON ka.attrelid = x.indrelid AND ka.attnum = k.attnum
                                             AND k.attnum > 0
                                   WHERE k.ord <= x.indnkeyatts),
                                  'WHERE ' || pg_catalog.pg_get_expr(x.indpred, x.indrelid))
                              ORDER BY ic.relname)
                       FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
                       WHERE x.indrelid = c.oid AND NOT x.indisprimary)
                   END AS indexes
            FROM pg_catalog.pg_class c
            LEFT JOIN pg_catalog.pg_attribute a
                   ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
            LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
            -- (current_schema()::regnamespace would fold a name like "Sales" to lower case)
            WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
              -- The exact name through pg_class's index; only when there is none, every relation whose
              -- name differs only in case (no index serves lower(relname): a scan of the whole catalog,
              -- whose cost grows with the number of tables).
              AND c.oid IN (
                  SELECT e.oid FROM pg_catalog.pg_class e
                  WHERE e.relname = :name AND e.relnamespace = (
                      SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
                  UNION ALL
                  SELECT f.oid FROM pg_catalog.pg_class f
                  WHERE lower(f.relname) = lower(:name) AND f.relnamespace = (
                            SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
                    AND NOT EXISTS (
                        SELECT 1 FROM pg_catalog.pg_class g
                        WHERE g.relname = :name AND g.relnamespace = (
                            SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())))
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'i', 'I', 'c')
        ) AS t ON true
        ORDER BY t.relname, t.attnum
        """
    ),
    "postgresql.list": text(
        """
        SELECT c.relname FROM pg_catalog.pg_class c
        WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
          AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
        """
    ),
    # PostgreSQL: step prologue, SET LOCAL for the transaction without a statement per setting.
    "postgresql.limits": text(
        "SELECT set_config('lock_timeout', :lock, true), set_config('statement_timeout', :statement, true)"
    ),
    # MySQL/MariaDB: information_schema compares TABLE_NAME case-sensitively (lower_case_table_names=0),
    # so the name is found first, then the columns are read with the exact name (an indexed look-up).
    "mysql.find": text(
        """
        SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
        WHERE TABLE_SCHEMA = DATABASE() AND LOWER(TABLE_NAME) = LOWER(:name)
        ORDER BY TABLE_NAME
        """
    ),
    # The columns ('c' rows) and the index parts but the primary key's ('i' rows) in one round trip.
    "mysql.columns": text(
        """
        SELECT 'c', COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', COLUMN_KEY = 'PRI',
               COLUMN_DEFAULT, EXTRA, ORDINAL_POSITION
        FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name
        UNION ALL
        SELECT 'i', INDEX_NAME, COLUMN_NAME, NON_UNIQUE = 0, NULL, SUB_PART, NULL, SEQ_IN_INDEX
        FROM information_schema.STATISTICS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name AND INDEX_NAME <> 'PRIMARY'
        """
    ),
    # MariaDB: JSON is LONGTEXT plus a column CHECK (json_valid(`col`)). Filling CHECK_CONSTRAINTS costs
    # a few milliseconds, so it is read only for tables that have a LONGTEXT column.
    "mariadb.checks": text(
        """
        SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
        WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :name AND LEVEL = 'Column'
        """
    ),
    "mysql.list": text(
        """
        SELECT TABLE_NAME FROM information_schema.TABLES
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'
        ORDER BY TABLE_NAME
        """
    ),
    # SQLite: names are case-insensitive; one query joins the schema table with pragma_table_info.
    "sqlite.inspect": text(
        """
        SELECT m.name, m.type, p.name, p.type, p."notnull", p.pk, p.dflt_value
        FROM sqlite_master m LEFT JOIN pragma_table_info(m.name) p
        WHERE m.name = :name COLLATE NOCASE AND m.type IN ('table', 'view')
        ORDER BY p.cid
        """
    ),
    # SQLite: the indexes but the primary key's, with their columns in order (NULL: an expression).
    "sqlite.indexes": text(
        """
        SELECT l.name, l."unique", l.partial, i.name
        FROM pragma_index_list(:name) l JOIN pragma_index_info(l.name) i
        WHERE l.origin <> 'pk'
        ORDER BY l.name, i.seqno
        """
    ),
    "sqlite.list": text(
        """
        SELECT name FROM sqlite_master
        WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
        ORDER BY name
        """
    ),
}

# Many tables by their exact names in one round trip (drift scans): the one-table query with the exact
# names only (a name found in no other letter case is looked up alone, as inspect_table does).
_ONE_TABLE = QUERIES["postgresql.inspect"].text
_CANDIDATES = _ONE_TABLE[
    _ONE_TABLE.index("              -- The exact name through") : _ONE_TABLE.index(
        "              AND c.relkind IN"
    )
]
QUERIES["postgresql.inspect_many"] = text(
    _ONE_TABLE.replace(_CANDIDATES, "              AND c.relname = ANY (CAST(:names AS text[]))\n")
)

# Relations that take a table's name without being tables: CREATE TABLE over one fails (42P07), and
# the step must say why at once rather than retry that failure as a race.
_PG_KINDS = {
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
    "S": "sequence",
    "i": "index",
    "I": "partitioned index",
    "c": "composite type",
}


def inspect_table(
    conn: Connection, *, engine: str, mariadb: bool, name: str, pg_limits: tuple[str, str] | None = None
) -> LiveTable | None:
    """The live table called ``name`` (case-insensitively) or ``None``; :class:`NotATable` for a view.

    ``pg_limits`` (lock timeout, statement timeout, e.g. ``"5000ms"``) are set for the transaction by the
    same query on PostgreSQL (``set_config(..., true)``: ``SET LOCAL``).
    """
    if engine == "postgresql":
        return _pg(conn, name, pg_limits)
    if engine == "mysql":
        return _mysql(conn, name, mariadb=mariadb)
    return _sqlite(conn, name)


def list_tables(conn: Connection, *, engine: str) -> list[str]:
    return [str(row[0]) for row in conn.execute(QUERIES[f"{engine}.list"])]


def _pick(names: list[str], wanted: str) -> str:
    # Two tables differing only in case can exist if created outside schemasaga: prefer the exact one.
    return wanted if wanted in names else names[0]


def inspect_tables_pg(conn: Connection, names: list[str]) -> list[LiveTable | NotATable | None]:
    """PostgreSQL: each table as :func:`inspect_table` finds it (a view: its :class:`NotATable`), with one
    catalog query for all the names that exist as spelled, and one each for the others."""
    found = conn.execute(
        QUERIES["postgresql.inspect_many"], {"names": names, "lock": None, "statement": None}
    )
    by_name: dict[str, list[Any]] = {}
    for r in found:
        if r[2] is not None:
            by_name.setdefault(r[2], []).append(r[2:])
    out: list[LiveTable | NotATable | None] = []
    for name in names:
        try:
            out.append(_pg_table(by_name[name], name) if name in by_name else _pg(conn, name, None))
        except NotATable as exc:
            out.append(exc)
    return out


def _pg(conn: Connection, name: str, limits: tuple[str, str] | None) -> LiveTable | None:
    lock, statement = limits or (None, None)  # None: a plain read keeps the session's settings
    found = conn.execute(
        QUERIES["postgresql.inspect"], {"name": name, "lock": lock, "statement": statement}
    ).all()
    rows = [r[2:] for r in found if r[2] is not None]
    if not rows:
        return None
    return _pg_table(rows, name)


def _pg_table(rows: list[Any], name: str) -> LiveTable:
    table = _pick(sorted({r[0] for r in rows}), name)
    rows = [r for r in rows if r[0] == table]
    kind = rows[0][1]
    if kind in _PG_KINDS:
        raise NotATable(table, _PG_KINDS[kind])
    indexes = tuple(
        LiveIndex(
            name=index_name,
            columns=tuple(columns or ()) + ((predicate,) if predicate else ()),
            unique=bool(unique),
            valid=bool(valid),
        )
        for r in rows
        for index_name, unique, valid, columns, predicate in (r[7] or ())
    )
    columns = []
    for r in rows:
        if r[2] is None:
            continue
        logical = logical_from_raw("postgresql", r[3])
        columns.append(
            LiveColumn(
                name=r[2],
                type=logical,
                raw_type=r[3],
                nullable=not r[4],
                primary_key=bool(r[5]),
                default=parse_default("postgresql", logical, r[6]),
                unique=_unique(r[2], indexes),
            )
        )
    # PostgreSQL tells "age" from "Age": two columns.
    return LiveTable(name=table, columns=tuple(columns), fold_case=False, indexes=indexes)


def _mysql(conn: Connection, name: str, *, mariadb: bool) -> LiveTable | None:
    found = conn.execute(QUERIES["mysql.find"], {"name": name}).all()
    if not found:
        return None
    table = _pick([r[0] for r in found], name)
    kind = next(r[1] for r in found if r[0] == table)
    if kind != "BASE TABLE":
        raise NotATable(table, str(kind).lower())
    found_rows = conn.execute(QUERIES["mysql.columns"], {"name": table}).all()
    found_columns = sorted((r[1:] for r in found_rows if r[0] == "c"), key=lambda r: int(r[6]))
    parts = sorted((r[1:] for r in found_rows if r[0] == "i"), key=lambda r: (str(r[0]).lower(), int(r[6])))
    json_checked: set[str] = set()
    if mariadb and any(str(r[1]).lower() == "longtext" for r in found_columns):
        for constraint, clause in conn.execute(QUERIES["mariadb.checks"], {"name": table}):
            if clause == f"json_valid(`{constraint}`)":
                json_checked.add(constraint)
    indexes = _grouped(
        (index_name, bool(unique), _part(column, sub_part))
        for index_name, column, unique, _, sub_part, _, _ in parts
    )
    columns = []
    for col, raw, nullable, pk, default, extra, _ in found_columns:
        raw = str(raw)
        logical = logical_from_raw("mysql", raw)
        if col in json_checked and raw.lower() == "longtext":
            logical, raw = ColumnType.JSON, "json"
        dialect = "mariadb" if mariadb else "mysql"
        columns.append(
            LiveColumn(
                name=col,
                type=logical,
                raw_type=raw,
                nullable=bool(nullable),
                primary_key=bool(pk),
                default=parse_default(dialect, logical, default, generated="DEFAULT_GENERATED" in str(extra)),
                unique=_unique(col, indexes),
            )
        )
    return LiveTable(name=table, columns=tuple(columns), indexes=indexes)


def _part(column: str | None, sub_part: Any) -> str:
    if column is None:
        return "(expression)"  # MySQL 8 functional index part
    return f"{column}({int(sub_part)})" if sub_part is not None else str(column)


def _sqlite(conn: Connection, name: str) -> LiveTable | None:
    rows = conn.execute(QUERIES["sqlite.inspect"], {"name": name}).all()
    if not rows:
        return None
    table, kind = rows[0][0], rows[0][1]
    if kind != "table":
        raise NotATable(table, kind)
    parts: list[tuple[str, bool, str]] = []
    partial: set[str] = set()
    for index_name, unique, is_partial, column in conn.execute(QUERIES["sqlite.indexes"], {"name": table}):
        parts.append((index_name, bool(unique), column if column is not None else "(expression)"))
        if is_partial:
            partial.add(index_name)
    indexes = tuple(
        LiveIndex(i.name, (*i.columns, "WHERE (partial)"), i.unique) if i.name in partial else i
        for i in _grouped(parts)
    )
    columns = []
    for r in rows:
        if r[2] is None:
            continue
        logical = logical_from_raw("sqlite", r[3])
        columns.append(
            LiveColumn(
                name=r[2],
                type=logical,
                raw_type=r[3],
                # as declared: SQLite reports a PRIMARY KEY column as nullable unless NOT NULL is
                # declared, which the adapter always does
                nullable=not r[4],
                primary_key=bool(r[5]),
                default=parse_default("sqlite", logical, r[6]),
                unique=_unique(r[2], indexes),
            )
        )
    return LiveTable(name=table, columns=tuple(columns), indexes=indexes)


def _grouped(parts: Iterable[tuple[str, bool, str]]) -> tuple[LiveIndex, ...]:
    """Index parts, in order, as indexes (in the order of their first part)."""
    found: dict[str, tuple[bool, list[str]]] = {}
    for index_name, unique, column in parts:
        found.setdefault(index_name, (unique, []))[1].append(column)
    return tuple(LiveIndex(n, tuple(columns), unique) for n, (unique, columns) in found.items())


def _unique(column: str, indexes: tuple[LiveIndex, ...]) -> bool:
    return any(i.unique and i.valid and i.columns == (column,) for i in indexes)


# -- defaults ---------------------------------------------------------------------------------------

# PostgreSQL: a quoted literal with its casts ('x'::character varying, '{}'::jsonb, E'a\\b'::text).
_PG_QUOTED = re.compile(r"(E?)'((?:[^']|'')*)'(?:::[a-z][a-z0-9_ ]*(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])?)*", re.I)
_PG_NULL = re.compile(r"NULL(?:::[a-z][a-z0-9_ ]*(?:\(\d+(?:,\s*\d+)?\))?)*", re.I)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.I)
_INTEGER = re.compile(r"[-+]?\d+")
_ESCAPES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_TRUE = {"true", "t", "1", "b'1'"}
_FALSE = {"false", "f", "0", "b'0'"}


def parse_default(
    dialect: str, kind: ColumnType | None, raw: str | None, *, generated: bool = False
) -> JsonLiteral | Expression | None:
    """The live default printed as ``raw`` by ``dialect`` (``postgresql``, ``mariadb``, ``mysql``,
    ``sqlite``) for a column of logical type ``kind``: its canonical JSON literal, an
    :class:`Expression` when it is not a literal of that type, ``None`` when there is none.

    ``generated``: MySQL flags an expression default (``EXTRA`` says ``DEFAULT_GENERATED``)."""
    if raw is None:
        return None
    text = str(raw)
    if dialect == "mysql":
        # MySQL prints literals unquoted, as they are: a string default 'NULL' is the text NULL.
        if generated or kind is None:
            return Expression(text)
        return _literal(kind, text, text, quoted=True)
    stripped = text.strip()
    while dialect == "postgresql" and stripped.startswith("(") and stripped.endswith(")"):
        stripped = stripped[1:-1].strip()  # (-5)
    if stripped.upper() == "NULL" or (dialect == "postgresql" and _PG_NULL.fullmatch(stripped)):
        return None  # DEFAULT NULL: no default
    if kind is None:
        return Expression(text)
    value: str | None = None
    if dialect == "postgresql":
        match = _PG_QUOTED.fullmatch(stripped)
        if match is not None:
            value = match.group(2).replace("''", "'")
            if match.group(1):
                value = _unescape(value)
    elif len(stripped) >= 2 and stripped[0] == stripped[-1] == "'":
        inner = stripped[1:-1]
        value = _unescape(inner) if dialect == "mariadb" else inner.replace("''", "'")
    if value is not None:
        return _literal(kind, value, text, quoted=True)
    return _literal(kind, stripped, text, quoted=False)


class _NotLiteral(Exception):
    pass


def _literal(kind: ColumnType, text: str, raw: str, *, quoted: bool) -> JsonLiteral | Expression:
    """The canonical default of type ``kind`` spelled ``text``, else the expression ``raw``."""
    try:
        value = canonical_default(kind, _value(kind, text, quoted=quoted))
    except (_NotLiteral, InvalidDefault, ValueError):
        return Expression(raw)
    return Expression(raw) if value is None else value


def _value(kind: ColumnType, text: str, *, quoted: bool) -> Any:
    t = ColumnType
    if kind in (t.INTEGER, t.BIGINT):
        if not _INTEGER.fullmatch(text.strip()):
            raise _NotLiteral
        return int(text)
    if kind is t.FLOAT:
        if not _NUMBER.fullmatch(text.strip()):
            raise _NotLiteral
        return float(text)
    if kind is t.DECIMAL:
        if not _NUMBER.fullmatch(text.strip()):
            raise _NotLiteral
        return text.strip()
    if kind is t.BOOLEAN:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _NotLiteral
    if not quoted:
        raise _NotLiteral  # an unquoted word or number is no string, date or JSON literal
    if kind is t.JSON:
        return json.loads(text)
    if kind is t.DATETIME:
        return text if _has_zone(text) else f"{text}+00:00"  # MySQL prints TIMESTAMP in its UTC session
    return text


def _has_zone(text: str) -> bool:
    return re.search(r"(?:[+-]\d\d(?::?\d\d)?|Z)$", text.strip()) is not None


def _unescape(text: str) -> str:
    """A MariaDB (or PostgreSQL E'') string body: backslash escapes and doubled quotes."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        elif ch == "'" and text[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)
