"""Workers killed at every step boundary of the editing sagas (issue 8): renaming a table, altering a
column, adding and dropping an index. These four share one saga (``ALTER_STEPS``: ``alter``, which runs
the change's plan, then ``verify``), so one kill point stops any of them at the same boundary.

On PostgreSQL, for each boundary (before the step's DDL, after it but before its completion is
recorded, after that is committed; for both steps), one change of each kind runs at once on four tables,
each on a worker of its own that SIGKILLs itself there (``SCHEMASAGA_KILL_AT``, one job per worker).
A fresh worker then finds the dead workers' jobs (stalled) and finishes them. On MariaDB and SQLite, the
same at the boundary that matters most: the DDL done, its completion not recorded. After each round
every operation is settled (completed, exactly one outcome), and what the service shows equals the
live schema as SQLAlchemy's inspector reads it (columns, types, nullability, defaults, uniques,
indexes), and the service's own drift check is clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import table_events
from tests.fault.harness import Process, Service, settle
from tests.integration.live_schema import assert_shown_is_live, read_live

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow]

KINDS = ("rename_table", "alter_column", "add_index", "drop_index")
BOUNDARIES = ("before_action", "after_action", "after_record")
PG_POINTS = [f"{step}:{where}" for step in ("alter", "verify") for where in BOUNDARIES]
OUTCOMES = {"TableChangeConfirmed", "TableChangeRejected"}


def _table(c: httpx.Client, name: str) -> str:
    r = c.post(
        "/v1/tables",
        json={
            "name": name,
            "columns": [{"name": "age", "type": "integer"}, {"name": "code", "type": "string"}],
            "indexes": [{"columns": ["code"], "name": f"{name}_nm"}],
        },
    )
    assert r.status_code == 202, r.text
    return str(r.json()["table_id"])


def _change(c: httpx.Client, kind: str, table_id: str, name: str) -> httpx.Response:
    base = f"/v1/tables/{table_id}"
    if kind == "rename_table":
        return c.patch(base, json={"name": f"{name}_renamed"})
    if kind == "alter_column":
        # All at once: rename, type, NOT NULL, default and a unique index (built CONCURRENTLY on
        # PostgreSQL, outside the transaction; a rebuild of the table on SQLite).
        return c.patch(
            f"{base}/columns/age",
            json={"name": "years", "type": "bigint", "nullable": False, "default": 0, "unique": True},
        )
    if kind == "add_index":
        return c.post(f"{base}/indexes", json={"columns": ["age", "code"], "unique": True})
    assert kind == "drop_index"
    return c.delete(f"{base}/indexes/{name}_nm")


def _expected(kind: str, table: dict[str, Any], name: str) -> bool:
    if kind == "rename_table":
        return bool(table["name"] == f"{name}_renamed")
    if kind == "alter_column":
        years = table["columns"].get("years")
        return years is not None and (years["type"], years["nullable"], years["unique"]) == (
            "bigint",
            False,
            True,
        )
    names = [i["name"] for i in table["indexes"]]
    if kind == "add_index":
        return any(i["columns"] == ["age", "code"] and i["unique"] for i in table["indexes"])
    return f"{name}_nm" not in names


def _wait_jobs_done(svc: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    while svc.query(query)[0][0]:
        assert time.monotonic() < deadline, f"jobs not done after {timeout}s\n{svc.logs()[-4000:]}"
        time.sleep(0.1)


def _stop(worker: Process) -> None:
    assert worker.terminate(timeout=30) == 0, worker.log()[-3000:]


def _kill_round(
    svc: Service, c: httpx.Client, *, kill_at: str, tables: dict[str, tuple[str, str]], engine: str
) -> None:
    """One change of each kind, each run by a worker that dies at ``kill_at``; then a rescuer."""
    doomed = [svc.start_worker(SCHEMASAGA_KILL_AT=kill_at, SCHEMASAGA_WORKER_CONCURRENCY="1") for _ in KINDS]
    operations: dict[str, str] = {}
    for kind in KINDS:
        table_id, name = tables[kind]
        r = _change(c, kind, table_id, name)
        assert r.status_code == 202, (kind, r.text)
        operations[kind] = r.json()["operation_id"]
    for worker in doomed:
        worker.popen.wait(timeout=60)
        assert f"killing process {worker.pid} at {kill_at}" in worker.log(), worker.log()[-3000:]
    rescuer = svc.start_worker()
    try:
        settle(c, timeout=60)
        # Killed after the outcome was committed, a job is still `doing` under its dead worker: the
        # rescuer takes it back and finds nothing left to do.
        _wait_jobs_done(svc)
    finally:
        _stop(rescuer)
    for kind in KINDS:
        table_id, name = tables[kind]
        op = c.get(f"/v1/operations/{operations[kind]}").json()
        assert op["status"] == "completed", (kill_at, kind, op)
        assert op["steps_done"] == ["alter", "verify"], (kill_at, kind, op)
        events = table_events(c, table_id)
        outcomes = [
            e["event_type"]
            for e in events
            if e["event_type"] in OUTCOMES and e["data"].get("operation_id") == operations[kind]
        ]
        assert outcomes == ["TableChangeConfirmed"], (kill_at, kind, outcomes)
        shown = c.get(f"/v1/tables/{table_id}").json()
        assert shown["synced"] and _expected(kind, shown, name), (kill_at, kind, shown)
        assert_shown_is_live(shown, read_live(svc.physical_url, shown["name"]), engine=engine)
    drift = c.get("/v1/databases/default/drift").json()
    assert drift["clean"] is True and drift["unmanaged_tables"] == [], (kill_at, drift)


def _run(svc: Service, *, points: list[str], engine: str) -> None:
    svc.start_server()
    setup = svc.start_worker()
    with svc.client() as c:
        rounds: list[dict[str, tuple[str, str]]] = []
        for n in range(len(points)):
            rounds.append({kind: (_table(c, f"k{n}_{i}"), f"k{n}_{i}") for i, kind in enumerate(KINDS)})
        settle(c, timeout=60)
        _stop(setup)
        for kill_at, tables in zip(points, rounds, strict=True):
            began = time.monotonic()
            _kill_round(svc, c, kill_at=kill_at, tables=tables, engine=engine)
            print(f"{engine} {kill_at}: four kills recovered in {time.monotonic() - began:.1f}s")


def test_postgresql_editing_sagas_survive_a_kill_at_every_step_boundary(
    make_service: Callable[..., Service],
) -> None:
    _run(make_service(), points=PG_POINTS, engine="postgresql")


@pytest.mark.parametrize("engine", [pytest.param("mysql", marks=pytest.mark.mariadb), pytest.param("sqlite")])
def test_editing_sagas_survive_a_kill_after_the_ddl_on_mariadb_and_sqlite(
    request: pytest.FixtureRequest, core_db: str, tmp_path: Path, engine: str
) -> None:
    url: str = request.getfixturevalue({"mysql": "byodb_mysql_url", "sqlite": "byodb_sqlite_url"}[engine])
    svc = Service(core_conninfo=core_db, byodb_url=url, physical_url=url, workdir=tmp_path)
    try:
        _run(svc, points=["alter:after_action"], engine=engine)
    finally:
        svc.kill_all()
