"""The physical DDL of a table's shape on one engine, for display (pure, no I/O).

SQLAlchemy's ``CreateTable`` and ``CreateIndex`` compiled with the engine's dialect: every identifier
quoted by the dialect, every default a literal the dialect renders, never user text pasted into SQL. The
saga's own statements come from the adapter and the planner; this is what a person reads to see the
table as the engine would hold it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.elements import quoted_name

from schemasaga.byodb.planner import Sql, unique_index_name
from schemasaga.byodb.types import type_for
from schemasaga.domain.columns import TableSchema


def create_statements(engine: str, schema: TableSchema) -> list[str]:
    """``CREATE TABLE`` for ``schema`` on ``engine``, then one ``CREATE INDEX`` per unique column and per
    index of the table."""
    sql = Sql.of(engine)
    table = sa.Table(
        quoted_name(schema.name, quote=True),
        sa.MetaData(),
        *(
            sa.Column(
                quoted_name(c.name, quote=True),
                type_for(engine, c.type),
                primary_key=c.primary_key,
                nullable=c.nullable and not c.primary_key,
                autoincrement=False,
                server_default=None if c.default is None else sa.text(sql.literal(c.type, c.default)),
            )
            for c in schema.columns
        ),
    )
    indexes = [
        sa.Index(
            quoted_name(unique_index_name(schema.name, c.name), quote=True), table.c[c.name], unique=True
        )
        for c in schema.columns
        if c.unique and not c.primary_key
    ]
    indexes += [
        sa.Index(quoted_name(i.name, quote=True), *(table.c[n] for n in i.columns), unique=i.unique)
        for i in schema.indexes
        if all(n in table.c for n in i.columns)
    ]
    statements = [str(CreateTable(table).compile(dialect=sql.dialect)).strip().replace("\t", "  ")]
    statements += [str(CreateIndex(i).compile(dialect=sql.dialect)).strip() for i in indexes]
    return statements
