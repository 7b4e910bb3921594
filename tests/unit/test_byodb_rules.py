"""Pure rules of the BYODB adapter: identifiers, the type mapping, error classification, URL parsing."""

from __future__ import annotations

import sqlite3

import psycopg
import pymysql
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MARIADB, RESERVED_WORDS_MYSQL

from schemasaga.byodb import (
    ByodbAdapter,
    InvalidIdentifier,
    PermanentByodbError,
    TransientByodbError,
    classify,
    validate_identifier,
)
from schemasaga.byodb.types import TYPE_TABLE, logical_from_raw, logical_type, type_for
from schemasaga.domain.columns import ColumnType

ENGINES = ("postgresql", "mysql", "sqlite")

# -- identifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["users", "Users", "_x", "a1_b2", "created_at"])
def test_good_names_pass(engine: str, name: str) -> None:
    validate_identifier(name, engine=engine)
    validate_identifier(name, engine=engine, kind="column")


@pytest.mark.parametrize(
    ("engine", "name", "message"),
    [
        ("postgresql", "select", "table name 'select' is a reserved word in postgresql"),
        ("postgresql", "SeLeCt", "reserved word in postgresql"),
        ("mysql", "select", "reserved word in mysql"),
        ("mysql", "Interval", "reserved word in mysql"),
        ("sqlite", "select", "reserved word in sqlite"),
        ("sqlite", "SQLITE_master", "starts with 'sqlite_'"),
        ("postgresql", "pg_class", "starts with 'pg_'"),
        ("postgresql", "PG_stuff", "starts with 'pg_'"),
        ("postgresql", "a" * 64, "64 bytes long; postgresql allows at most 63 bytes"),
        ("postgresql", "é" * 32, "64 bytes long"),
        ("mysql", "a" * 65, "65 characters long; mysql allows at most 64"),
        ("mysql", "é" * 32, "invalid"),
        ("sqlite", "a" * 129, "129 characters long; sqlite allows at most 128"),
        ("sqlite", "é" * 32, "invalid"),
    ],
)
def test_bad_names_per_engine(engine: str, name: str, message: str) -> None:
    with pytest.raises(InvalidIdentifier, match=message) as info:
        validate_identifier(name, engine=engine)
    assert info.value.engine == engine


def test_pg_prefix_is_only_refused_for_postgresql_tables() -> None:
    validate_identifier("pg_class", engine="postgresql", kind="column")
    validate_identifier("pg_class", engine="mysql")
    validate_identifier("pg_class", engine="sqlite")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["1a", "a-b", "a b", 'a"b', "a`b", "a;drop", "ünï", "a\n", " a"])
def test_bad_characters_everywhere(engine: str, name: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        validate_identifier(name, engine=engine, kind="column")
    assert str(info.value) == (
        f"column name {name!r} is invalid: use ASCII letters, digits and underscores, "
        "not starting with a digit"
    )
    assert info.value.engine == engine


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_names_everywhere(engine: str) -> None:
    with pytest.raises(InvalidIdentifier, match=r"^table name is empty$") as info:
        validate_identifier("", engine=engine)
    assert info.value.engine == engine


def test_longest_names_pass() -> None:
    validate_identifier("a" * 63, engine="postgresql")
    validate_identifier("a" * 64, engine="mysql")
    validate_identifier("a" * 128, engine="sqlite")


SYSTEM_COLUMN_NAMES = [
    *[("postgresql", n) for n in ("oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid", "XMin")],
    *[("sqlite", n) for n in ("rowid", "oid", "_rowid_", "RowId")],
]


@pytest.mark.parametrize(("engine", "name"), SYSTEM_COLUMN_NAMES)
def test_system_column_names(engine: str, name: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        validate_identifier(name, engine=engine, kind="column")
    assert str(info.value) == f"column name {name!r} is a system column name in {engine}"
    assert info.value.engine == engine
    validate_identifier(name, engine=engine, kind="table")  # only columns clash with them
    validate_identifier(name, engine="mysql", kind="column")  # MySQL/MariaDB have none


@pytest.mark.parametrize(
    ("word", "only_in"),
    [("rank", RESERVED_WORDS_MYSQL), ("lateral", RESERVED_WORDS_MYSQL), ("period", RESERVED_WORDS_MARIADB)],
)
def test_a_word_reserved_by_mysql_or_by_mariadb_alone_is_refused_for_both(
    word: str, only_in: set[str]
) -> None:
    # "mysql" stands for MySQL and MariaDB: a name must be usable on either server.
    assert word in only_in and (word in RESERVED_WORDS_MYSQL) != (word in RESERVED_WORDS_MARIADB)
    with pytest.raises(InvalidIdentifier, match=rf"^column name '{word}' is a reserved word in mysql$"):
        validate_identifier(word, engine="mysql", kind="column")
    validate_identifier(word, engine="sqlite", kind="column")


def test_invalid_identifier_is_a_permanent_value_error() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        validate_identifier("", engine="sqlite", kind="column")
    assert isinstance(info.value, ValueError) and isinstance(info.value, PermanentByodbError)
    assert str(info.value) == "column name is empty"


def test_unknown_engine() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown engine 'oracle'; expected one of postgresql, mysql, sqlite$"
    ):
        validate_identifier("x", engine="oracle")


# -- types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("column_type", list(ColumnType))
def test_type_for_round_trips(engine: str, column_type: ColumnType) -> None:
    assert logical_type(engine, type_for(engine, column_type)) == column_type
    assert logical_from_raw(engine, TYPE_TABLE[column_type][engine]) == column_type


@pytest.mark.parametrize("engine", ENGINES)
def test_types_are_distinct_per_engine(engine: str) -> None:
    rendered = [TYPE_TABLE[t][engine] for t in ColumnType]
    assert len(set(rendered)) == len(rendered)


@pytest.mark.parametrize(
    ("engine", "raw", "expected"),
    [
        # as the catalogs print them
        ("postgresql", "character varying(255)", ColumnType.STRING),
        ("postgresql", "numeric(38,10)", ColumnType.DECIMAL),
        ("postgresql", "timestamp(3) without time zone", ColumnType.TIMESTAMP),
        ("postgresql", "timestamp with time zone", ColumnType.DATETIME),
        ("postgresql", "jsonb", ColumnType.JSON),
        ("postgresql", "character(36)", None),
        ("postgresql", "smallint", None),
        ("mysql", "int(11)", ColumnType.INTEGER),
        ("mysql", "int(10) unsigned", None),
        ("mysql", "bigint(20)", ColumnType.BIGINT),
        ("mysql", "tinyint(1)", ColumnType.BOOLEAN),
        ("mysql", "tinyint(4)", None),
        ("mysql", "datetime(6)", ColumnType.TIMESTAMP),
        ("mysql", "timestamp(6)", ColumnType.DATETIME),
        ("mysql", "char(36)", ColumnType.UUID),
        ("mysql", "uuid", ColumnType.UUID),
        ("mysql", "varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", ColumnType.STRING),
        ("sqlite", "NUMERIC(38, 10)", ColumnType.DECIMAL),
        ("sqlite", "CHAR(36)", ColumnType.UUID),
        ("sqlite", "BLOB", None),
        ("sqlite", "", None),
    ],
)
def test_logical_from_raw(engine: str, raw: str, expected: ColumnType | None) -> None:
    assert logical_from_raw(engine, raw) == expected


def test_logical_type_of_reflected_types() -> None:
    assert logical_type("postgresql", postgresql.TIMESTAMP(timezone=True)) == ColumnType.DATETIME
    assert logical_type("mysql", mysql.TINYINT(display_width=1)) == ColumnType.BOOLEAN
    assert logical_type("mysql", mysql.LONGTEXT()) == ColumnType.TEXT
    assert logical_type("sqlite", sqltypes.NullType()) is None


def test_type_table_covers_every_type_and_engine() -> None:
    assert set(TYPE_TABLE) == set(ColumnType)
    assert all(set(row) == set(ENGINES) for row in TYPE_TABLE.values())
    assert TYPE_TABLE[ColumnType.TIMESTAMP]["mysql"] == "DATETIME(6)"


# -- classification ------------------------------------------------------------------------------


def _wrapped(orig: Exception) -> sa_exc.DBAPIError:
    return sa_exc.OperationalError("ALTER TABLE x", {}, orig)


@pytest.mark.parametrize(
    ("orig", "transient"),
    [
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.errors.SerializationFailure("could not serialize"), True),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.InsufficientPrivilege("permission denied for schema public"), False),
        (psycopg.errors.FeatureNotSupported("nope"), False),
        (psycopg.errors.ProgramLimitExceeded("tables can have at most 1600 columns"), False),
        (psycopg.OperationalError("connection failed: Connection refused"), True),
        (psycopg.OperationalError('connection failed: FATAL: database "x" does not exist'), False),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
        (pymysql.err.OperationalError(1213, "Deadlock found"), True),
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server"), True),
        (pymysql.err.OperationalError(1969, "Query execution was interrupted (max_statement_time)"), True),
        (pymysql.err.OperationalError(1142, "CREATE command denied"), False),
        (pymysql.err.OperationalError(1118, "Row size too large"), False),
        (psycopg.OperationalError('connection failed: FATAL:  too many connections for role "app"'), True),
        (psycopg.OperationalError("FATAL:  remaining connection slots are reserved for superuser"), True),
        (
            psycopg.errors.UniqueViolation('duplicate key value violates unique constraint "users_pkey"'),
            False,
        ),
        (
            pymysql.err.OperationalError(1226, "User 'app' has exceeded the 'max_user_connections' resource"),
            True,
        ),
        (pymysql.err.OperationalError(1203, "User app already has more than 'max_user_connections'"), True),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("interrupted"), True),
        (sqlite3.OperationalError("attempt to write a readonly database"), False),
        (sqlite3.OperationalError("near 'x': syntax error"), False),
    ],
)
def test_classify(orig: Exception, transient: bool) -> None:
    error = classify(_wrapped(orig), context="add column 'a'")
    assert isinstance(error, TransientByodbError if transient else PermanentByodbError)
    assert error.transient is transient
    assert str(error).startswith("add column 'a': ")
    assert str(orig.args[-1]) in str(error)  # the database's own message


def test_classify_codes_and_engines() -> None:
    pg = classify(_wrapped(psycopg.errors.LockNotAvailable("lock timeout")))
    assert (pg.engine, pg.code) == ("postgresql", "55P03")
    my = classify(_wrapped(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")))
    assert (my.engine, my.code) == ("mysql", "1205")
    lite = classify(sqlite3.OperationalError("database is locked"))
    assert lite.engine == "sqlite"


def test_classify_other_exceptions() -> None:
    already = TransientByodbError("x")
    assert classify(already) is already
    assert isinstance(classify(TimeoutError("slow")), TransientByodbError)
    assert isinstance(classify(sa_exc.TimeoutError("pool exhausted")), TransientByodbError)
    assert isinstance(classify(RuntimeError("bug")), PermanentByodbError)


def test_invalidated_connection_is_transient() -> None:
    error = sa_exc.OperationalError("SELECT 1", {}, RuntimeError("gone"), connection_invalidated=True)
    assert isinstance(classify(error), TransientByodbError)


# -- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("postgresql://u@h/db", "postgresql"),
        ("mysql+pymysql://u@h/db", "mysql"),
        ("mariadb+pymysql://u@h/db", "mysql"),
        ("sqlite:////tmp/x.sqlite3", "sqlite"),
    ],
)
def test_engine_from_url(url: str, engine: str) -> None:
    adapter = ByodbAdapter(url)  # builds the Engine, connects lazily
    try:
        assert adapter.engine == engine
        assert "u@" not in repr(adapter)
    finally:
        adapter.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("oracle://u:p@h/db", "unsupported BYODB driver 'oracle'"),
        ("postgresql+asyncpg://u@h/db", "unsupported BYODB driver 'postgresql\\+asyncpg'"),
        ("not a url", "invalid BYODB URL"),
        ("sqlite://", "in-memory"),
    ],
)
def test_bad_urls_are_permanent(url: str, message: str) -> None:
    with pytest.raises(PermanentByodbError, match=message):
        ByodbAdapter(url)


# -- rendered column definitions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://u@h/db", "mysql+pymysql://u@h/db", "sqlite:////tmp/x.sqlite3"]
)
def test_a_column_definition_does_not_depend_on_its_table(url: str) -> None:
    """The adapter renders column definitions once per shape, on a table of a fixed name, and gives
    them to every table of that shape: that is right only while no engine's definition names its
    table (a sequence, an enum type, a check constraint would)."""
    from schemasaga.domain.columns import Column

    adapter = ByodbAdapter(url)
    try:
        columns = [
            Column(f"c_{t.value}", t, nullable=i % 2 == 0, primary_key=i == 0, unique=i == 1)
            for i, t in enumerate(ColumnType)
        ]
        assert adapter._render_columns("t", columns) == adapter._render_columns('Other "Table"', columns)
        created = adapter._create_sql("users", columns, ())
        assert created[0].startswith(f"CREATE TABLE {adapter._quote('users')} (")
        assert adapter._create_sql("users", columns, ()) == created  # remembered, the same
    finally:
        adapter.dispose()
