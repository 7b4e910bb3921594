"""The planner, pure: the statements each change gets on each engine, their locks and costs, quoting of
hostile names and defaults, generated names, and the type-change matrix's refusals."""

from __future__ import annotations

import pytest

from schemasaga.byodb.planner import (
    GENERATED_NAME_LENGTH,
    TYPE_CHANGES,
    Conversion,
    change_between,
    conversion,
    middle_schema,
    names_live_indexes,
    plan,
    unique_index_name,
)
from schemasaga.byodb.rowchecks import incompatible_predicate
from schemasaga.domain.changes import AddIndex, AlterColumn, Change, DeleteTable, DropIndex, RenameTable
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType, Index, TableSchema
from schemasaga.domain.errors import UnsupportedChange
from schemasaga.domain.schema import LiveIndex, LiveTable

T = ColumnType
PEOPLE = TableSchema(
    "people",
    (*DEFAULT_COLUMNS, Column("age", T.TEXT, default="1"), Column("nick", T.STRING, unique=True)),
    (Index("ix_people_name", ("name",)),),
)
ENGINES = ("postgresql", "mysql", "sqlite")
NICK_KEY = unique_index_name("people", "nick")
YEARS_KEY = unique_index_name("people", "years")


def sqls(engine: str, change: Change, before: TableSchema = PEOPLE, **kw: object) -> list[str]:
    return [s.sql for s in plan(engine, before, change.apply(before), change, **kw).statements]  # type: ignore[arg-type]


def test_rename_table_on_each_engine() -> None:
    assert sqls("postgresql", RenameTable("folks")) == ['ALTER TABLE "people" RENAME TO "folks"']
    assert sqls("mysql", RenameTable("folks")) == ["ALTER TABLE `people` RENAME TO `folks`"]
    assert sqls("sqlite", RenameTable("folks")) == ['ALTER TABLE "people" RENAME TO "folks"']
    only = plan("postgresql", PEOPLE, RenameTable("folks").apply(PEOPLE), RenameTable("folks")).statements[0]
    assert (only.lock, only.rewrites, only.scans, only.transactional) == (
        "ACCESS EXCLUSIVE",
        False,
        False,
        True,
    )


def test_postgresql_alters_in_a_safe_order_and_builds_the_unique_index_concurrently() -> None:
    change = AlterColumn("age", Column("years", T.INTEGER, nullable=False, default=5, unique=True))
    result = plan("postgresql", PEOPLE, change.apply(PEOPLE), change)

    assert [s.sql for s in result.statements] == [
        'ALTER TABLE "people" RENAME COLUMN "age" TO "years"',
        'ALTER TABLE "people" ALTER COLUMN "years" DROP DEFAULT',
        'ALTER TABLE "people" ALTER COLUMN "years" TYPE INTEGER USING "years"::INTEGER',
        'ALTER TABLE "people" ALTER COLUMN "years" SET DEFAULT 5',
        'ALTER TABLE "people" ALTER COLUMN "years" SET NOT NULL',
        f'CREATE UNIQUE INDEX CONCURRENTLY "{YEARS_KEY}" ON "people" ("years")',
    ]
    kinds = [(s.lock, s.rewrites, s.scans, s.transactional) for s in result.statements]
    assert kinds[2] == ("ACCESS EXCLUSIVE", True, True, True)
    assert kinds[4] == ("ACCESS EXCLUSIVE", False, True, True)
    assert kinds[5] == ("SHARE UPDATE EXCLUSIVE", False, True, False)
    assert any(
        "narrowing type text to integer: existing rows are checked first" in w for w in result.warnings
    )
    assert any("rewrites the table" in w for w in result.warnings)


def test_postgresql_varchar_to_text_rewrites_nothing() -> None:
    change = AlterColumn("nick", Column("nick", T.TEXT, unique=True))
    (statement,) = plan("postgresql", PEOPLE, change.apply(PEOPLE), change).statements
    assert statement.sql.endswith('TYPE TEXT USING "nick"::TEXT')
    assert not statement.rewrites and not statement.scans


def test_mysql_makes_one_atomic_statement_per_change() -> None:
    change = AlterColumn("age", Column("years", T.INTEGER, nullable=False, default=5, unique=True))
    (statement,) = plan("mysql", PEOPLE, change.apply(PEOPLE), change).statements
    assert statement.sql == (
        "ALTER TABLE `people` CHANGE COLUMN `age` `years` INTEGER NOT NULL DEFAULT 5, "
        f"ADD UNIQUE INDEX `{YEARS_KEY}` (`years`)"
    )
    assert "ALGORITHM=COPY" in statement.lock and statement.rewrites
    assert sqls("mysql", AlterColumn("age", Column("years", T.TEXT, default="1"))) == [
        "ALTER TABLE `people` RENAME COLUMN `age` TO `years`"
    ]
    assert sqls("mysql", AlterColumn("nick", Column("nick", T.STRING))) == [
        f"ALTER TABLE `people` DROP INDEX `{NICK_KEY}`"
    ]


def test_sqlite_renames_in_place_and_rebuilds_for_a_type_change() -> None:
    assert sqls("sqlite", AlterColumn("age", Column("years", T.TEXT, default="1"))) == [
        'ALTER TABLE "people" RENAME COLUMN "age" TO "years"'
    ]
    assert sqls("sqlite", AlterColumn("nick", Column("nick", T.STRING))) == [f'DROP INDEX "{NICK_KEY}"']

    change = AlterColumn("age", Column("years", T.INTEGER))
    result = plan("sqlite", PEOPLE, change.apply(PEOPLE), change)
    statements = [s.sql for s in result.statements]
    assert statements[0] == "PRAGMA legacy_alter_table = ON"  # (a view on the table survives the rename)
    assert statements[5] == "PRAGMA legacy_alter_table = OFF"
    del statements[5], statements[0]
    assert statements[0].startswith('CREATE TABLE "_schemasaga_new_people" ("id" INTEGER NOT NULL, ')
    assert '"years" INTEGER NULL' in statements[0] and 'PRIMARY KEY ("id")' in statements[0]
    assert statements[1] == (
        'INSERT INTO "_schemasaga_new_people" ("id", "name", "created_at", "updated_at", "years", "nick") '
        'SELECT "id", "name", "created_at", "updated_at", CAST("age" AS INTEGER), "nick" FROM "people"'
    )
    assert statements[2:] == [
        'DROP TABLE "people"',
        'ALTER TABLE "_schemasaga_new_people" RENAME TO "people"',
        'CREATE INDEX "ix_people_name" ON "people" ("name")',
        f'CREATE UNIQUE INDEX "{NICK_KEY}" ON "people" ("nick")',
    ]
    assert all(s.transactional for s in result.statements)
    assert {s.lock for s in result.statements} == {
        "database write lock",
        "none (a setting of the connection)",
    }
    assert result.statements[2].rewrites


def test_indexes_on_each_engine() -> None:
    add = AddIndex(Index("ix_people_nick_age", ("nick", "age"), unique=True))
    assert sqls("postgresql", add) == [
        'CREATE UNIQUE INDEX CONCURRENTLY "ix_people_nick_age" ON "people" ("nick", "age")'
    ]
    assert sqls("mysql", add) == [
        "ALTER TABLE `people` ADD UNIQUE INDEX `ix_people_nick_age` (`nick`, `age`)"
    ]
    assert sqls("sqlite", add) == ['CREATE UNIQUE INDEX "ix_people_nick_age" ON "people" ("nick", "age")']
    drop = DropIndex(PEOPLE.indexes[0])
    assert sqls("postgresql", drop) == ['DROP INDEX CONCURRENTLY "ix_people_name"']
    assert sqls("mysql", drop) == ["ALTER TABLE `people` DROP INDEX `ix_people_name`"]
    assert sqls("sqlite", drop) == ['DROP INDEX "ix_people_name"']
    assert not plan("postgresql", PEOPLE, drop.apply(PEOPLE), drop).statements[0].transactional


def test_mysql_refuses_a_plain_index_on_a_text_column() -> None:
    with pytest.raises(UnsupportedChange, match="prefix length"):
        sqls("mysql", AddIndex(Index("ix_age", ("age",))))


def test_mysql_refuses_text_for_a_column_in_a_plain_index() -> None:
    table = TableSchema("t", (DEFAULT_COLUMNS[0], Column("c", T.STRING)), (Index("ix_c", ("c",)),))
    change = AlterColumn("c", Column("c", T.TEXT))
    with pytest.raises(UnsupportedChange, match="drop the index first"):
        sqls("mysql", change, table)
    assert sqls("postgresql", change, table)


def test_dropping_a_unique_uses_the_live_index_name() -> None:
    live = LiveTable(
        "people",
        (),
        indexes=(
            LiveIndex("invalid_one", ("nick",), unique=True, valid=False),
            LiveIndex("old_name_of_nick", ("nick",), unique=True),
            LiveIndex("ix_people_name", ("name",)),
        ),
    )
    change = AlterColumn("nick", Column("nick", T.STRING))
    assert sqls("postgresql", change, live=live) == ['DROP INDEX CONCURRENTLY "old_name_of_nick"']
    assert sqls("mysql", change, live=live) == ["ALTER TABLE `people` DROP INDEX `old_name_of_nick`"]


HOSTILE = 'x"; DROP TABLE people; --`\\'


@pytest.mark.parametrize("engine", ENGINES)
def test_hostile_names_and_defaults_are_quoted(engine: str) -> None:
    table = TableSchema(HOSTILE[:20], (*DEFAULT_COLUMNS, Column('c`"', T.STRING)))
    change = AlterColumn('c`"', Column('c`"', T.STRING, default="it's 50% \\'; DROP TABLE x; --"))
    sql = " ".join(s.sql for s in plan(engine, table, change.apply(table), change).statements)
    if engine == "mysql":
        assert 'ALTER TABLE `x"; DROP TABLE peopl` CHANGE COLUMN `c``"` `c``"`' in sql
        assert "'it''s 50% \\\\''; DROP TABLE x; --'" in sql  # backslashes escaped too
    else:
        assert '"x""; DROP TABLE peopl"' in sql and '"c`"""' in sql
        assert "'it''s 50% \\''; DROP TABLE x; --'" in sql


@pytest.mark.parametrize(
    ("kind", "value", "postgresql", "mysql", "sqlite"),
    [
        (T.BOOLEAN, True, "true", "true", "1"),
        (T.DECIMAL, "1.5", "1.5", "1.5", "1.5"),
        (T.JSON, {"a": [1, "b"]}, '\'{"a": [1, "b"]}\'', '(\'{"a": [1, "b"]}\')', '\'{"a": [1, "b"]}\''),
        (
            T.DATETIME,
            "2024-01-01 00:00:00+00:00",
            "'2024-01-01 00:00:00+00:00'",
            "'2024-01-01 00:00:00'",
            None,
        ),
    ],
)
def test_defaults_render_as_literals(
    kind: ColumnType, value: object, postgresql: str, mysql: str, sqlite: str | None
) -> None:
    table = TableSchema("t", (DEFAULT_COLUMNS[0], Column("c", kind)))
    change = AlterColumn("c", Column("c", kind, default=value))
    for engine, expected in (("postgresql", postgresql), ("mysql", mysql), ("sqlite", sqlite)):
        if expected is None:
            continue
        joined = " ".join(sqls(engine, change, table))
        assert f"DEFAULT {expected}" in joined, (engine, joined)


def test_generated_names_fit_and_stay_apart() -> None:
    assert NICK_KEY.startswith("uq_people_nick_") and NICK_KEY == unique_index_name("people", "nick")
    long_table = "t" * 60
    first, second = unique_index_name(long_table, "a" * 10), unique_index_name(long_table, "a" * 11)
    assert len(first) == len(second) == GENERATED_NAME_LENGTH == 63
    assert first != second


def test_the_type_matrix() -> None:
    for engine in ENGINES:
        assert conversion(engine, T.INTEGER, T.BIGINT) is Conversion.WIDEN
        assert conversion(engine, T.BIGINT, T.INTEGER) is Conversion.CHECK
        assert conversion(engine, T.TEXT, T.DATE) is Conversion.CHECK
        assert conversion(engine, T.JSON, T.TEXT) is Conversion.WIDEN
        for source in T:
            if source is not T.TEXT:
                assert conversion(engine, source, T.TEXT) is Conversion.WIDEN
    assert (T.DATE, T.DATETIME) in TYPE_CHANGES["postgresql"]
    assert (T.DATE, T.DATETIME) not in TYPE_CHANGES["mysql"]  # MySQL's TIMESTAMP ends in 2038


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("source", "target"),
    [(T.BOOLEAN, T.INTEGER), (T.UUID, T.JSON), (T.DATETIME, T.DATE), (T.FLOAT, T.INTEGER)],
)
def test_unsupported_type_changes_are_refused(engine: str, source: ColumnType, target: ColumnType) -> None:
    table = TableSchema("t", (DEFAULT_COLUMNS[0], Column("c", source)))
    change = AlterColumn("c", Column("c", target))
    with pytest.raises(UnsupportedChange, match=f"from {source.value} to {target.value}") as raised:
        plan(engine, table, change.apply(table), change)
    assert raised.value.code == "unsupported_change"


def test_mysql_refuses_date_to_datetime() -> None:
    table = TableSchema("t", (DEFAULT_COLUMNS[0], Column("c", T.DATE)))
    change = AlterColumn("c", Column("c", T.DATETIME))
    with pytest.raises(UnsupportedChange):
        plan("mysql", table, change.apply(table), change)
    assert plan("sqlite", table, change.apply(table), change).statements


def test_checks_exist_for_every_checked_conversion() -> None:
    for engine, matrix in TYPE_CHANGES.items():
        for (source, target), kind in matrix.items():
            predicate = incompatible_predicate(engine, source, target, '"c"')
            assert (predicate is None) == (kind is Conversion.WIDEN), (engine, source, target)


def test_no_plan_for_other_changes() -> None:
    with pytest.raises(UnsupportedChange):
        plan("postgresql", PEOPLE, PEOPLE, DeleteTable())


def test_change_between_and_middle_schema() -> None:
    change = AlterColumn("nick", Column("alias", T.STRING))
    after = change.apply(PEOPLE)
    assert change_between(PEOPLE, after) == change
    assert change_between(PEOPLE, RenameTable("x").apply(PEOPLE)) == RenameTable("x")
    add = AddIndex(Index("ix", ("age",)))
    assert change_between(PEOPLE, add.apply(PEOPLE)) == add
    with pytest.raises(UnsupportedChange):
        change_between(PEOPLE, PEOPLE)

    unique = AlterColumn("age", Column("years", T.TEXT, default="1", unique=True))
    middle = middle_schema(PEOPLE, unique.apply(PEOPLE), unique)
    years = middle.column("years")
    assert years is not None and not years.unique  # built CONCURRENTLY after the transaction


def test_only_plans_that_name_existing_indexes_need_the_live_table() -> None:
    assert names_live_indexes("postgresql", PEOPLE, DropIndex(PEOPLE.indexes[0]))
    assert names_live_indexes("mysql", PEOPLE, AlterColumn("nick", Column("nick", T.STRING)))  # unique off
    assert names_live_indexes("sqlite", PEOPLE, AlterColumn("age", Column("age", T.INTEGER)))  # a rebuild
    assert not names_live_indexes("postgresql", PEOPLE, AlterColumn("age", Column("age", T.INTEGER)))
    assert not names_live_indexes("sqlite", PEOPLE, RenameTable("folks"))
    assert not names_live_indexes("sqlite", PEOPLE, AddIndex(Index("ix", ("age",))))
