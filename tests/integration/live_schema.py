"""SQLAlchemy's inspector as an independent reader of a live table, and the check that what the service
shows (``GET /v1/tables/{id}``) is that table: names and order, types by the README's type table,
nullability, primary key, which columns have a default and which are unique, and the indexes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

# What the inspector reports for each logical type (the README's type table), after _spelled below.
PHYSICAL: dict[str, dict[str, str]] = {
    "postgresql": {
        "INTEGER": "integer",
        "BIGINT": "bigint",
        "TEXT": "text",
        "VARCHAR(255)": "string",
        "BOOLEAN": "boolean",
        "DOUBLE PRECISION": "float",
        "NUMERIC(38, 10)": "decimal",
        "DATE": "date",
        "TIMESTAMP WITHOUT TIME ZONE": "timestamp",
        "TIMESTAMP WITH TIME ZONE": "datetime",
        "JSONB": "json",
        "UUID": "uuid",
    },
    "mysql": {
        "INTEGER": "integer",
        "BIGINT": "bigint",
        "MEDIUMTEXT": "text",
        "VARCHAR(255)": "string",
        "TINYINT": "boolean",
        "BOOL": "boolean",
        "BOOLEAN": "boolean",
        "DOUBLE": "float",
        "DECIMAL(38, 10)": "decimal",
        "DATE": "date",
        "DATETIME(FSP=6)": "timestamp",
        "TIMESTAMP(FSP=6)": "datetime",
        "JSON": "json",
        "LONGTEXT": "json",  # MariaDB's JSON: LONGTEXT with a json_valid check
        "CHAR(36)": "uuid",
    },
    "sqlite": {
        "INTEGER": "integer",
        "BIGINT": "bigint",
        "TEXT": "text",
        "VARCHAR(255)": "string",
        "BOOLEAN": "boolean",
        "REAL": "float",
        "NUMERIC(38, 10)": "decimal",
        "DATE": "date",
        "TIMESTAMP": "timestamp",
        "DATETIME": "datetime",
        "JSON": "json",
        "CHAR(36)": "uuid",
    },
}


def _spelled(engine: str, type_: Any, dialect: sa.Dialect) -> str:
    text = str(type_.compile(dialect=dialect)).upper()
    if engine == "mysql":
        text = re.sub(r"^(INTEGER|BIGINT|TINYINT)\(\d+\)", r"\1", text)
        text = re.sub(r"^(DATETIME|TIMESTAMP)\((\d)\)", r"\1(FSP=\2)", text)
        text = re.sub(r" COLLATE \S+$| CHARACTER SET \S+", "", text)
    return text


@dataclass
class Live:
    name: str
    columns: list[dict[str, Any]]  # name, type, nullable, has_default
    primary_key: list[str]
    indexes: list[tuple[str | None, tuple[str, ...], bool]]


def read_live(url: str, name: str) -> Live | None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        found = [t for t in inspector.get_table_names() if t.lower() == name.lower()]
        if not found:
            return None
        (table,) = found
        kind = engine.dialect.name if engine.dialect.name != "mariadb" else "mysql"
        pk = list(inspector.get_pk_constraint(table)["constrained_columns"])
        defaults = {str(c["name"]): c.get("default") is not None for c in inspector.get_columns(table)}
        if kind == "mysql":
            # SQLAlchemy's MySQL reflection parses SHOW CREATE TABLE and loses a default with a quote or a
            # backslash in it (MariaDB escapes it there): information_schema says which columns have one.
            with engine.connect() as conn:
                # (MariaDB says NULL, unquoted, for a nullable column with no default; a text default
                # is quoted there)
                defaults = {
                    str(name): default is not None and default != "NULL"
                    for name, default in conn.execute(
                        sa.text(
                            "SELECT column_name, column_default FROM information_schema.columns"
                            " WHERE table_schema = DATABASE() AND table_name = :t"
                        ),
                        {"t": table},
                    )
                }
        columns = [
            {
                "name": c["name"],
                "type": PHYSICAL[kind].get(_spelled(kind, c["type"], engine.dialect), repr(c["type"])),
                # A primary key is NOT NULL whatever the engine says (SQLite's INTEGER PRIMARY KEY).
                "nullable": bool(c["nullable"]) and c["name"] not in pk,
                "has_default": defaults[str(c["name"])],
            }
            for c in inspector.get_columns(table)
        ]
        by_name: dict[str | None, tuple[str | None, tuple[str, ...], bool]] = {}
        unnamed: list[tuple[str | None, tuple[str, ...], bool]] = []
        for i in inspector.get_indexes(table):
            by_name[i["name"]] = (i["name"], tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
        for u in inspector.get_unique_constraints(table):
            entry = (u["name"], tuple(str(c) for c in u["column_names"]), True)
            if u["name"] is None:
                unnamed.append(entry)
            else:
                by_name.setdefault(u["name"], entry)
        return Live(table, columns, pk, [*by_name.values(), *unnamed])
    finally:
        engine.dispose()


def assert_shown_is_live(shown: dict[str, Any], live: Live | None, *, engine: str) -> None:
    assert live is not None, f"table {shown['name']!r} is not in the database"
    assert live.name == shown["name"]
    columns = list(shown["columns"].values())
    assert [c["name"] for c in live.columns] == [c["name"] for c in columns]
    for want, got in zip(columns, live.columns, strict=True):
        assert got["type"] == want["type"], (want, got)
        assert got["nullable"] == want["nullable"], (want, got)
        assert got["has_default"] == (want["default"] is not None), (want, got)
    assert live.primary_key == shown["primary_key"]
    fold = (lambda s: s.lower()) if engine in ("mysql", "sqlite") else (lambda s: s)
    remaining = list(live.indexes)
    for index in shown["indexes"]:
        match = [i for i in remaining if i[0] is not None and fold(i[0]) == fold(index["name"])]
        assert match, f"index {index} is not in the database: {live.indexes}"
        assert match[0][1:] == (tuple(index["columns"]), index["unique"]), (index, match[0])
        remaining.remove(match[0])
    # What is left makes the unique columns unique: one unique index on each alone, nothing else.
    uniques = sorted((c["name"],) for c in columns if c["unique"])
    assert sorted(cols for _, cols, unique in remaining if unique) == uniques, (remaining, uniques)
    assert all(unique for _, _, unique in remaining), remaining
