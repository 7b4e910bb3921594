"""The DDL the console shows for a table's shape: SQLAlchemy's CREATE TABLE and CREATE INDEX compiled for
each engine's dialect, every name quoted by it, and statements the engine runs as they are."""

from __future__ import annotations

import sqlite3

from schemasaga.byodb.ddl import create_statements
from schemasaga.domain.columns import Column, ColumnType, Index, TableSchema

SCHEMA = TableSchema(
    'odd "name"',
    (
        Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),
        Column("motto", ColumnType.STRING, default="it's", unique=True),
        Column("age", ColumnType.INTEGER, nullable=False, default=3),
    ),
    (Index("ix_odd_age", ("age", "id")),),
)


def test_sqlite_runs_the_statements_and_holds_the_shape() -> None:
    db = sqlite3.connect(":memory:")
    for statement in create_statements("sqlite", SCHEMA):
        db.execute(statement)
    info = {row[1]: row for row in db.execute("""PRAGMA table_info('odd "name"')""")}
    assert list(info) == ["id", "motto", "age"]
    assert info["id"][5] == 1 and info["age"][3] == 1  # primary key; NOT NULL
    assert info["motto"][4] == "'it''s'" and info["age"][4] == "3"
    indexes = {row[1]: row[2] for row in db.execute("""PRAGMA index_list('odd "name"')""")}
    assert indexes["ix_odd_age"] == 0 and [n for n, u in indexes.items() if n.startswith("uq_")] != []


def test_each_engine_quotes_with_its_own_dialect() -> None:
    [pg_table, *pg_indexes] = create_statements("postgresql", SCHEMA)
    assert pg_table.startswith('CREATE TABLE "odd ""name""" (') and 'PRIMARY KEY ("id")' in pg_table
    assert len(pg_indexes) == 2 and pg_indexes[0].startswith('CREATE UNIQUE INDEX "uq_')
    [mysql_table, *_] = create_statements("mysql", SCHEMA)
    assert (
        mysql_table.startswith('CREATE TABLE `odd "name"` (')
        and "`age` INTEGER NOT NULL DEFAULT 3" in mysql_table
    )
