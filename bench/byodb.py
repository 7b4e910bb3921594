"""BYODB adapter overhead: raw DDL through the driver vs the same DDL through ByodbAdapter (inspecting first).

Run: ``.venv/bin/python -m bench.byodb [--pairs N] [--engines postgresql,mysql,sqlite]``

Per engine, in a scratch database: CREATE TABLE + DROP TABLE pairs (the four default columns) and
ALTER TABLE ADD COLUMN + DROP COLUMN pairs, first as pre-compiled SQL through psycopg / pymysql / sqlite3
in autocommit (the cheapest way to run DDL), then through the adapter (a connection from its pool, a
transaction with its timeouts on PostgreSQL and SQLite, one catalog inspection, the DDL).
PostgreSQL counts dropped columns toward its 1,600-column limit, so the ALTER pairs use a new table every
``ALTER_PER_TABLE`` pairs, on both sides.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from sqlalchemy import Column as SaColumn
from sqlalchemy import MetaData, Table
from sqlalchemy.sql.ddl import CreateColumn, CreateTable

from schemasaga.byodb import ByodbAdapter
from schemasaga.byodb.types import dialect_for, type_for
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
ALTER_PER_TABLE = 500
EXTRA = Column("extra", ColumnType.INTEGER)


def ddl(engine: str) -> tuple[Callable[[str], str], str, Callable[[str], str]]:
    """The adapter's own DDL, compiled once: create(table), add column spec, quote(name)."""
    dialect = dialect_for(engine)
    quote = dialect.identifier_preparer.quote_identifier

    def create(name: str) -> str:
        cols = [
            SaColumn(c.name, type_for(engine, c.type), primary_key=c.primary_key, nullable=c.nullable)
            for c in DEFAULT_COLUMNS
        ]
        return str(CreateTable(Table(name, MetaData(), *cols)).compile(dialect=dialect))

    spec = str(CreateColumn(SaColumn(EXTRA.name, type_for(engine, EXTRA.type))).compile(dialect=dialect))
    return create, spec, quote


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def run_raw(engine: str, execute: Callable[[str], Any], pairs: int, r: int) -> tuple[float, float]:
    create, spec, q = ddl(engine)
    started = time.perf_counter()
    for i in range(pairs):
        name = f"raw{r}_t{i}"
        execute(create(name))
        execute(f"DROP TABLE {q(name)}")
    tables = rate(pairs, time.perf_counter() - started)

    started = time.perf_counter()
    for i in range(pairs):
        if i % ALTER_PER_TABLE == 0:
            table = f"raw{r}_alter{i}"
            execute(create(table))
        execute(f"ALTER TABLE {q(table)} ADD COLUMN {spec}")
        execute(f"ALTER TABLE {q(table)} DROP COLUMN {q(EXTRA.name)}")
    columns = rate(2 * pairs, time.perf_counter() - started)
    return tables, columns


def run_adapter(adapter: ByodbAdapter, pairs: int, r: int) -> tuple[float, float]:
    adapter.ping()  # the pool is warm on both sides
    started = time.perf_counter()
    for i in range(pairs):
        name = f"ad{r}_t{i}"
        assert adapter.create_table(name, DEFAULT_COLUMNS)
        assert adapter.drop_table(name)
    tables = rate(pairs, time.perf_counter() - started)

    started = time.perf_counter()
    for i in range(pairs):
        if i % ALTER_PER_TABLE == 0:
            table = f"ad{r}_alter{i}"
            adapter.create_table(table, DEFAULT_COLUMNS)
        assert adapter.add_column(table, EXTRA)
        assert adapter.drop_column(table, EXTRA.name)
    columns = rate(2 * pairs, time.perf_counter() - started)
    return tables, columns


ROUNDS = 5


def best(results: list[tuple[float, float]]) -> tuple[float, float]:
    """Best rate of the rounds per measure: the machine's noise only ever slows a round down."""
    return max(r[0] for r in results), max(r[1] for r in results)


def alternate(
    raw: Callable[[int], tuple[float, float]], ours: Callable[[int], tuple[float, float]]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Raw and adapter rounds interleaved, so background load hits both sides alike."""
    raws, adapters = [], []
    for r in range(ROUNDS):
        raws.append(raw(r))
        adapters.append(ours(r))
    return best(raws), best(adapters)


def bench_postgresql(pairs: int) -> tuple[tuple[float, float], tuple[float, float], str]:
    db = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    try:
        with (
            psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True) as conn,
            ByodbAdapter(f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}") as adapter,
        ):
            raw, ours = alternate(
                lambda r: run_raw("postgresql", conn.execute, pairs, r),
                lambda r: run_adapter(adapter, pairs, r),
            )
            version = adapter.server_version()
    finally:
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    return raw, ours, f"PostgreSQL {version.split()[0]}"


def bench_mysql(pairs: int) -> tuple[tuple[float, float], tuple[float, float], str]:
    db = f"bench_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(**MYSQL, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
        conn = pymysql.connect(**MYSQL, database=db, autocommit=True)
        try:
            with conn.cursor() as cur, ByodbAdapter(f"mysql+pymysql://root@127.0.0.1:3306/{db}") as adapter:
                raw, ours = alternate(
                    lambda r: run_raw("mysql", cur.execute, pairs, r),
                    lambda r: run_adapter(adapter, pairs, r),
                )
                version = adapter.server_version()
        finally:
            conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()
    return raw, ours, version


def bench_sqlite(pairs: int) -> tuple[tuple[float, float], tuple[float, float], str]:
    with tempfile.TemporaryDirectory() as folder:
        raw_path, ours_path = Path(folder) / "raw.sqlite3", Path(folder) / "adapter.sqlite3"
        conn = sqlite3.connect(raw_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        try:
            with ByodbAdapter(f"sqlite:///{ours_path}") as adapter:
                raw, ours = alternate(
                    lambda r: run_raw("sqlite", conn.execute, pairs, r),
                    lambda r: run_adapter(adapter, pairs, r),
                )
        finally:
            conn.close()
    return raw, ours, f"SQLite {sqlite3.sqlite_version} (WAL, file in {tempfile.gettempdir()})"


BENCHES = {"postgresql": bench_postgresql, "mysql": bench_mysql, "sqlite": bench_sqlite}


def overhead(raw: float, ours: float) -> float:
    """Extra time per operation through the adapter, in % of the raw time."""
    return (raw / ours - 1) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="pairs per round (5 rounds)")
    parser.add_argument("--engines", default="postgresql,mysql,sqlite")
    args = parser.parse_args()
    print(f"{ROUNDS} interleaved rounds of {args.pairs} pairs, best round; tables pairs/s, columns stmts/s")
    print(f"{'engine':<11} {'measure':<22} {'raw':>9} {'adapter':>9} {'overhead':>9}")
    for engine in args.engines.split(","):
        try:
            (raw_t, raw_c), (ours_t, ours_c), version = BENCHES[engine](args.pairs)
        except (psycopg.OperationalError, pymysql.err.OperationalError) as exc:
            print(f"{engine:<11} skipped: {exc}")
            continue
        for label, first, raw, ours in (
            (engine, "CREATE+DROP TABLE", raw_t, ours_t),
            ("", "ALTER ADD/DROP COLUMN", raw_c, ours_c),
        ):
            print(f"{label:<11} {first:<22} {raw:>9.0f} {ours:>9.0f} {overhead(raw, ours):>8.1f}%")
        print(f"{'':<11} ({version})")


if __name__ == "__main__":
    main()
