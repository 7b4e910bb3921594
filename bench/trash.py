"""What the trash costs: deleting a table into the trash (a rename) against dropping it, and removing a
column into the trash (its values copied, keyed by the primary key, then the column dropped) against
dropping it, through ByodbAdapter on each engine.

Run: ``.venv/bin/python -m bench.trash [--rows N] [--rounds R] [--engines postgresql,mysql,sqlite]``

Each round makes two identical tables of N rows (the four default columns and an integer column), then
times the plain step on one and the trash's step on the other; the best round of each is kept and the
ratio trash / plain printed (both measured in the same run, on the same machine).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pymysql
import sqlalchemy as sa

from schemasaga.byodb import ByodbAdapter
from schemasaga.domain.changes import trash_name
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
SCORE = Column("score", ColumnType.INTEGER)


@contextmanager
def scratch(engine: str) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh database, dropped afterwards."""
    name = f"bench_trash_{uuid.uuid4().hex[:8]}"
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        return
    if engine == "postgresql":
        with psycopg.connect(PG, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            with psycopg.connect(PG, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        return
    conn = pymysql.connect(**MYSQL, autocommit=True)  # type: ignore[arg-type]
    try:
        conn.cursor().execute(f"CREATE DATABASE {name}")
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def make_table(adapter: ByodbAdapter, url: str, name: str, rows: int) -> None:
    adapter.create_table(name, (*DEFAULT_COLUMNS, SCORE))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    table = sa.Table(name, sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        for start in range(0, rows, 5000):
            conn.execute(
                sa.insert(table),
                [{"id": i, "name": f"n{i}", "score": i} for i in range(start, min(rows, start + 5000))],
            )
    engine.dispose()


def timed(step: Callable[[], object]) -> float:
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def one_round(adapter: ByodbAdapter, url: str, rows: int, r: int) -> dict[str, tuple[float, float]]:
    """Seconds of the plain step and of the trash's step, for each of delete and remove_column."""
    plain, kept = f"plain_{r}", f"kept_{r}"
    for name in (plain, kept):
        make_table(adapter, url, name, rows)
    key = (DEFAULT_COLUMNS[0],)
    trash = trash_name(uuid.uuid4().hex)
    drop = timed(lambda: adapter.drop_column(plain, "score"))
    copy = timed(
        lambda: (adapter.copy_to_trash(kept, "score", key, trash), adapter.drop_column(kept, "score"))
    )
    dropped = timed(lambda: adapter.drop_table(plain))
    renamed = timed(lambda: adapter.rename_table(kept, trash_name(uuid.uuid4().hex)))
    return {"delete": (dropped, renamed), "remove_column": (drop, copy)}


def bench(engine: str, rows: int, rounds: int) -> dict[str, tuple[float, float]]:
    with scratch(engine) as url, ByodbAdapter(url) as adapter:
        results = [one_round(adapter, url, rows, r) for r in range(rounds)]
    return {
        step: (min(res[step][0] for res in results), min(res[step][1] for res in results))
        for step in ("delete", "remove_column")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="postgresql,mysql,sqlite")
    args = parser.parse_args()
    print(f"{args.rows} rows, best of {args.rounds} rounds (SQLite {sqlite3.sqlite_version})")
    print(f"{'engine':12} {'step':14} {'plain (s)':>10} {'trash (s)':>10} {'trash / plain':>14}")
    for engine in args.engines.split(","):
        for step, (plain, trash) in bench(engine, args.rows, args.rounds).items():
            print(f"{engine:12} {step:14} {plain:10.4f} {trash:10.4f} {trash / plain:14.1f}")


if __name__ == "__main__":
    main()
