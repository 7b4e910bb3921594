"""One live-schema inspection (catalog queries and parsing), this checkout against another one's, A/B.

Run: ``.venv/bin/python -m bench.inspect_ab --base PATH [--n 300]`` where PATH is the ``inspect.py`` of the
other checkout (e.g. a worktree of an earlier commit: ``.../src/schemasaga/byodb/inspect.py``).

Per engine, in a scratch database holding a table of the four default columns, 5 rounds of ``n``
inspections on one connection, alternating which code goes first; prints the best and median rates.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType

import psycopg
import pymysql
import sqlalchemy as sa

from schemasaga.byodb import inspect as this
from schemasaga.byodb import open_adapter
from schemasaga.domain.columns import DEFAULT_COLUMNS

PG = "host=127.0.0.1 user=postgres dbname=postgres"
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("base_inspect", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rates(url: str, engine: str, base: ModuleType, n: int) -> dict[str, list[float]]:
    with open_adapter(url) as adapter:
        adapter.create_table("people", DEFAULT_COLUMNS)
    rates: dict[str, list[float]] = {"base": [], "this": []}
    engine_ = sa.create_engine(url)
    try:
        with engine_.connect() as conn:
            for round_ in range(5):
                order = [("base", base), ("this", this)]
                for label, module in order if round_ % 2 == 0 else reversed(order):
                    start = time.perf_counter()
                    for _ in range(n):
                        module.inspect_table(conn, engine=engine, mariadb=True, name="people")
                    rates[label].append(n / (time.perf_counter() - start))
                conn.rollback()
    finally:
        engine_.dispose()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other checkout's byodb/inspect.py")
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    base = _load(args.base)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    my = pymysql.connect(**MYSQL)
    my.cursor().execute(f"CREATE DATABASE {name}")
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "postgresql": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "mysql": f"mysql+pymysql://root@127.0.0.1:3306/{name}",
            "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}",
        }
        try:
            for engine, url in urls.items():
                rates = _rates(url, engine, base, args.n)
                shown = {
                    k: f"best {max(v):.0f}/s, median {statistics.median(v):.0f}/s" for k, v in rates.items()
                }
                print(f"{engine:<11} base: {shown['base']:<32} this: {shown['this']}")
        finally:
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
            my.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
            my.close()


if __name__ == "__main__":
    main()
