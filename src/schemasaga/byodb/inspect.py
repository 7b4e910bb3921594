"""Cheap inspection of the live schema: one or two catalog queries per look-up, per engine.

SQLAlchemy's ``inspect(...).get_columns`` + ``get_pk_constraint`` costs several queries (and on MariaDB
opens the table several times); every saga step inspects before acting, so these named queries read
exactly what a step needs. Table names are always bound parameters, never pasted into the SQL.

Table names are looked up case-insensitively (names are unique regardless of case, see ``identifiers``);
the live table reports the name as it is stored. What is read is the schema model's
:class:`~schemasaga.domain.schema.LiveTable`.
"""

from __future__ import annotations

from sqlalchemy import Connection, TextClause, text

from schemasaga.byodb.types import logical_from_raw
from schemasaga.domain.columns import ColumnType
from schemasaga.domain.schema import LiveColumn, LiveTable


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
               t.relname, t.relkind, t.attname, t.raw_type, t.attnotnull, t.pk
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (
            SELECT c.relname, c.relkind, a.attname, a.attnum,
                   format_type(a.atttypid, a.atttypmod) AS raw_type,
                   a.attnotnull,
                   coalesce(a.attnum = ANY (i.indkey), false) AS pk
            FROM pg_catalog.pg_class c
            LEFT JOIN pg_catalog.pg_attribute a
                   ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
            -- (current_schema()::regnamespace would fold a name like "Sales" to lower case)
            WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
              AND lower(c.relname) = lower(:name)
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
    "mysql.columns": text(
        """
        SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', COLUMN_KEY = 'PRI'
        FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name
        ORDER BY ORDINAL_POSITION
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
        SELECT m.name, m.type, p.name, p.type, p."notnull", p.pk
        FROM sqlite_master m LEFT JOIN pragma_table_info(m.name) p
        WHERE m.name = :name COLLATE NOCASE AND m.type IN ('table', 'view')
        ORDER BY p.cid
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


def _pg(conn: Connection, name: str, limits: tuple[str, str] | None) -> LiveTable | None:
    lock, statement = limits or (None, None)  # None: a plain read keeps the session's settings
    found = conn.execute(
        QUERIES["postgresql.inspect"], {"name": name, "lock": lock, "statement": statement}
    ).all()
    rows = [r[2:] for r in found if r[2] is not None]
    if not rows:
        return None
    table = _pick(sorted({r[0] for r in rows}), name)
    rows = [r for r in rows if r[0] == table]
    kind = rows[0][1]
    if kind in _PG_KINDS:
        raise NotATable(table, _PG_KINDS[kind])
    columns = tuple(
        LiveColumn(
            name=r[2],
            type=logical_from_raw("postgresql", r[3]),
            raw_type=r[3],
            nullable=not r[4],
            primary_key=bool(r[5]),
        )
        for r in rows
        if r[2] is not None
    )
    # PostgreSQL tells "age" from "Age": two columns.
    return LiveTable(name=table, columns=columns, fold_case=False)


def _mysql(conn: Connection, name: str, *, mariadb: bool) -> LiveTable | None:
    found = conn.execute(QUERIES["mysql.find"], {"name": name}).all()
    if not found:
        return None
    table = _pick([r[0] for r in found], name)
    kind = next(r[1] for r in found if r[0] == table)
    if kind != "BASE TABLE":
        raise NotATable(table, str(kind).lower())
    found_columns = conn.execute(QUERIES["mysql.columns"], {"name": table}).all()
    json_checked: set[str] = set()
    if mariadb and any(str(r[1]).lower() == "longtext" for r in found_columns):
        for constraint, clause in conn.execute(QUERIES["mariadb.checks"], {"name": table}):
            if clause == f"json_valid(`{constraint}`)":
                json_checked.add(constraint)
    columns = []
    for col, raw, nullable, pk in found_columns:
        logical = logical_from_raw("mysql", raw)
        if col in json_checked and raw.lower() == "longtext":
            logical, raw = ColumnType.JSON, "json"
        columns.append(
            LiveColumn(name=col, type=logical, raw_type=raw, nullable=bool(nullable), primary_key=bool(pk))
        )
    return LiveTable(name=table, columns=tuple(columns))


def _sqlite(conn: Connection, name: str) -> LiveTable | None:
    rows = conn.execute(QUERIES["sqlite.inspect"], {"name": name}).all()
    if not rows:
        return None
    table, kind = rows[0][0], rows[0][1]
    if kind != "table":
        raise NotATable(table, kind)
    columns = tuple(
        LiveColumn(
            name=r[2],
            type=logical_from_raw("sqlite", r[3]),
            raw_type=r[3],
            # as declared: SQLite reports a PRIMARY KEY column as nullable unless NOT NULL is declared,
            # which the adapter always does
            nullable=not r[4],
            primary_key=bool(r[5]),
        )
        for r in rows
        if r[2] is not None
    )
    return LiveTable(name=table, columns=columns)
