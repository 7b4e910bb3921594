"""Pure rules of the BYODB adapter about defaults and index names: how a default is rendered as SQL, how
each engine's catalog text is parsed back into the canonical JSON literal, and generated index names."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite

from schemasaga.byodb.identifiers import MAX_LENGTH, index_name, validate_identifier
from schemasaga.byodb.inspect import parse_default
from schemasaga.byodb.types import default_sql
from schemasaga.domain.columns import ColumnType
from schemasaga.domain.errors import InvalidDefault
from schemasaga.domain.schema import Expression

T = ColumnType
X = Expression
HOSTILE = "it's \\ '; DROP TABLE x; -- ü ✓"

# -- parsing what the catalogs print ---------------------------------------------------------------

PARSED: list[tuple[str, ColumnType | None, str | None, Any]] = [
    # PostgreSQL: pg_get_expr(adbin, adrelid)
    ("postgresql", T.TEXT, "'abc'::text", "abc"),
    ("postgresql", T.STRING, "'it''s ; --'::character varying", "it's ; --"),
    ("postgresql", T.DATE, "'2024-01-01'::date", "2024-01-01"),
    ("postgresql", T.INTEGER, "(-5)", -5),
    ("postgresql", T.INTEGER, "'-5'::integer", -5),
    ("postgresql", T.BIGINT, "5", 5),
    ("postgresql", T.JSON, """'{"a": 1}'::jsonb""", {"a": 1}),
    ("postgresql", T.JSON, "'true'::jsonb", True),
    ("postgresql", T.BOOLEAN, "true", True),
    ("postgresql", T.BOOLEAN, "false", False),
    ("postgresql", T.DECIMAL, "1.5", "1.5"),
    ("postgresql", T.DECIMAL, "'-2'::integer", "-2"),
    ("postgresql", T.FLOAT, "'100000000000000000000'::numeric", 1e20),
    ("postgresql", T.FLOAT, "0.1", 0.1),
    (
        "postgresql",
        T.TIMESTAMP,
        "'2024-01-01 10:00:00.5'::timestamp without time zone",
        "2024-01-01 10:00:00.500000",
    ),
    (
        "postgresql",
        T.DATETIME,
        "'2024-01-01 01:00:00+01'::timestamp with time zone",
        "2024-01-01 00:00:00+00:00",
    ),
    (
        "postgresql",
        T.UUID,
        "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ),
    ("postgresql", T.TEXT, "E'a\\\\b'::text", "a\\b"),
    ("postgresql", T.TEXT, "NULL::text", None),
    ("postgresql", T.INTEGER, None, None),
    ("postgresql", T.INTEGER, "nextval('people_id_seq'::regclass)", X("nextval('people_id_seq'::regclass)")),
    ("postgresql", T.DATETIME, "now()", X("now()")),
    ("postgresql", T.TIMESTAMP, "CURRENT_TIMESTAMP", X("CURRENT_TIMESTAMP")),
    ("postgresql", T.INTEGER, "'abc'::text", X("'abc'::text")),  # not a value of the column's type
    ("postgresql", T.TEXT, "5", X("5")),  # a number is no text literal
    ("postgresql", T.TEXT, "('a'::text || 'b'::text)", X("('a'::text || 'b'::text)")),
    ("postgresql", None, "'x'::bytea", X("'x'::bytea")),  # a column of no logical type
    # MariaDB: information_schema.COLUMNS.COLUMN_DEFAULT quotes strings, with backslash escapes
    ("mariadb", T.TEXT, "'it\\'s \\\\ x; --'", "it's \\ x; --"),
    ("mariadb", T.TEXT, "'a\\nb\\tc'", "a\nb\tc"),
    ("mariadb", T.STRING, "'NULL'", "NULL"),
    ("mariadb", T.STRING, "NULL", None),
    ("mariadb", T.DECIMAL, "1.5000000000", "1.5"),
    ("mariadb", T.DECIMAL, "-2.0000000000", "-2"),
    ("mariadb", T.BOOLEAN, "1", True),
    ("mariadb", T.BOOLEAN, "0", False),
    ("mariadb", T.FLOAT, "1e20", 1e20),
    ("mariadb", T.DATETIME, "'2023-12-31 22:00:00.000000'", "2023-12-31 22:00:00+00:00"),
    ("mariadb", T.TIMESTAMP, "'2024-01-01 10:00:00.500000'", "2024-01-01 10:00:00.500000"),
    ("mariadb", T.DATETIME, "current_timestamp(6)", X("current_timestamp(6)")),
    ("mariadb", T.INTEGER, "-5", -5),
    # MySQL: literals unquoted, as they are
    ("mysql", T.TEXT, "it's \\ x", "it's \\ x"),
    ("mysql", T.STRING, "NULL", "NULL"),
    ("mysql", T.DECIMAL, "1.5000000000", "1.5"),
    ("mysql", T.BOOLEAN, "1", True),
    ("mysql", T.JSON, '{"a": 1}', {"a": 1}),
    ("mysql", T.DATETIME, "2023-12-31 22:00:00.000000", "2023-12-31 22:00:00+00:00"),
    ("mysql", T.DATETIME, "CURRENT_TIMESTAMP", X("CURRENT_TIMESTAMP")),
    # SQLite: pragma_table_info.dflt_value, the default's text as declared
    ("sqlite", T.TEXT, "'it''s \\ x'", "it's \\ x"),
    ("sqlite", T.INTEGER, "-5", -5),
    ("sqlite", T.BOOLEAN, "1", True),
    ("sqlite", T.FLOAT, "1e+20", 1e20),
    ("sqlite", T.JSON, """'{"a": [1]}'""", {"a": [1]}),
    ("sqlite", T.INTEGER, "null", None),
    ("sqlite", T.TIMESTAMP, "CURRENT_TIMESTAMP", X("CURRENT_TIMESTAMP")),
    ("sqlite", T.DATE, "'2024-02-30'", X("'2024-02-30'")),  # no such day
]


@pytest.mark.parametrize(("dialect", "kind", "raw", "expected"), PARSED)
def test_a_default_as_a_catalog_prints_it(
    dialect: str, kind: ColumnType | None, raw: str | None, expected: Any
) -> None:
    parsed = parse_default(dialect, kind, raw)
    assert parsed == expected
    assert type(parsed) is type(expected)  # True is not 1


def test_mysql_flags_its_expression_defaults() -> None:
    assert parse_default("mysql", T.TEXT, "uuid()", generated=True) == X("uuid()")
    assert parse_default("mysql", T.TEXT, "uuid()") == "uuid()"  # without the flag it is text


# -- rendering ----------------------------------------------------------------------------------------

DIALECTS = {"postgresql": postgresql.dialect(), "mysql": mysql.dialect(), "sqlite": sqlite.dialect()}


@pytest.mark.parametrize(
    ("engine", "kind", "value", "sql"),
    [
        ("postgresql", T.INTEGER, -5, "-5"),
        ("postgresql", T.BOOLEAN, True, "true"),
        ("mysql", T.BOOLEAN, False, "0"),
        ("sqlite", T.BOOLEAN, True, "1"),
        ("sqlite", T.FLOAT, 1e20, "1e+20"),
        ("mysql", T.DECIMAL, "001.50", "1.5"),
        ("sqlite", T.TEXT, HOSTILE, "'it''s \\ ''; DROP TABLE x; -- ü ✓'"),
        # MySQL takes a backslash for an escape: doubled
        ("mysql", T.TEXT, HOSTILE + " 100%", "'it''s \\\\ ''; DROP TABLE x; -- ü ✓ 100%'"),
        ("postgresql", T.TEXT, "100%", "'100%'"),
        ("postgresql", T.JSON, {"a": "it's"}, """'{"a": "it''s"}'"""),
        ("postgresql", T.DATETIME, "2024-01-01T02:00:00+02:00", "'2024-01-01 00:00:00+00:00'"),
        ("mysql", T.DATETIME, "2024-01-01T02:00:00+02:00", "'2024-01-01 00:00:00'"),
        ("sqlite", T.UUID, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ],
)
def test_a_default_as_sql(engine: str, kind: ColumnType, value: Any, sql: str) -> None:
    assert default_sql(engine, kind, value, DIALECTS[engine]) == sql


def test_a_default_of_another_type_is_never_rendered() -> None:
    with pytest.raises(InvalidDefault):
        default_sql("postgresql", T.INTEGER, "1; DROP TABLE x", DIALECTS["postgresql"])
    with pytest.raises(InvalidDefault):
        default_sql("sqlite", T.DECIMAL, "1) ; DROP TABLE x; --", DIALECTS["sqlite"])


# -- index names --------------------------------------------------------------------------------------


def test_generated_index_names() -> None:
    name = index_name("people", ("email",), True)
    assert name.startswith("uq_people_email_") and name == index_name("people", ("email",), True)
    assert index_name("people", ("email",), False).startswith("ix_people_email_")
    # the readable parts coincide, the names do not
    assert index_name("a_b", ("c",), False) != index_name("a", ("b", "c"), False)
    long = index_name("t" * 63, ("c" * 63, "d" * 63), False)
    assert len(long) <= min(MAX_LENGTH.values())
    assert long != index_name("t" * 63, ("c" * 63, "e" * 63), False)
    for engine in MAX_LENGTH:
        for generated in (name, long):
            validate_identifier(generated, engine=engine, kind="index")
    with pytest.raises(ValueError):
        index_name("people", (), False)
