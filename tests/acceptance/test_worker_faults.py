"""Workers that die or are stopped mid-saga, as real processes: nothing accepted is lost.

The API runs as ``schemasaga serve --no-worker``; saga jobs run in separate ``schemasaga worker``
processes on the same core database. A worker started with ``SCHEMASAGA_KILL_AT`` SIGKILLs itself at
that saga step boundary; a fresh worker then has to find the dead worker's ``doing`` job (stalled:
no heartbeat for ``SCHEMASAGA_STALLED_WORKER_TIMEOUT`` seconds), retry it and finish the saga.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.acceptance.conftest import (
    Proc,
    Spawn,
    change_column,
    create_table,
    metadata_columns,
    operation,
    physical_columns,
    show,
    start_server,
    wait_finished,
    wait_synced,
    wait_until,
)
from tests.conftest import table_events

pytestmark = [pytest.mark.acceptance]

TABLE = "crash_target"
CONFIRMING = {"TableCreationConfirmed", "TableChangeConfirmed", "TableDeletionConfirmed"}
OUTCOMES = CONFIRMING | {"TableCreationRejected", "TableChangeRejected", "TableDeletionRejected"}


def start_worker(spawn: Spawn, env: dict[str, str], name: str, **extra: str) -> Proc:
    proc = spawn(name, ["worker"], {**env, **extra})
    proc.wait_for_log("Starting worker", timeout=30)
    return proc


def jobs_by_status(core_db: str) -> dict[str, int]:
    with psycopg.connect(core_db, connect_timeout=5) as conn:
        rows = conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall()
    return {status: int(n) for status, n in rows}


def outcome_events(client: httpx.Client, table_id: str, operation_id: str) -> list[str]:
    return [
        e["event_type"]
        for e in table_events(client, table_id)
        if e["event_type"] in OUTCOMES and e["data"].get("operation_id") == operation_id
    ]


def assert_consistent(client: httpx.Client, byodb_url: str, table_id: str) -> dict[str, Any]:
    """Guarantee 1: once nothing is in flight, the metadata equals the physical schema."""
    table = wait_synced(client, table_id)
    live = physical_columns(byodb_url, table["name"])
    if table["exists"]:
        assert live is not None, f"table {table['name']} is missing from the BYODB"
        assert metadata_columns(table) == live
    else:
        assert live is None, f"table {table['name']} should not exist: {live}"
    return table


def setup(client: httpx.Client, kind: str) -> str:
    """Bring the table to where the change under test applies (needs a live worker)."""
    table_id, _ = create_table(client, TABLE)
    wait_synced(client, table_id)
    if kind == "drop_column":
        change_column(client, table_id, "age", "integer")
        wait_synced(client, table_id)
    return table_id


def change(client: httpx.Client, kind: str, table_id: str) -> str:
    """Issue the change under test; its operation id."""
    if kind == "add":
        return change_column(client, table_id, "age", "integer")
    if kind == "drop_column":
        return change_column(client, table_id, "age")
    assert kind == "drop_table"
    r = client.post("/table/delete", json={"table_id": table_id})
    assert r.status_code == 200, r.text
    return str(r.json()["operation_id"])


def killed_mid_saga(
    procs: Spawn, env: dict[str, str], client: httpx.Client, kind: str, kill_at: str
) -> tuple[str, str, Proc]:
    """Run the change of ``kind`` on a worker that SIGKILLs itself at ``kill_at``; the table, the
    operation and the dead worker."""
    if kind == "create":
        doomed = start_worker(procs, env, "doomed-worker", SCHEMASAGA_KILL_AT=kill_at)
        table_id, op_id = create_table(client, TABLE)
    else:
        # Set up with a worker of its own: the kill point (verify:* in particular) must not fire there.
        helper = start_worker(procs, env, "setup-worker")
        table_id = setup(client, kind)
        helper.signal(signal.SIGTERM)
        assert helper.wait(30) == 0, helper.log_tail()
        doomed = start_worker(procs, env, "doomed-worker", SCHEMASAGA_KILL_AT=kill_at)
        op_id = change(client, kind, table_id)
    assert doomed.wait(30) == -signal.SIGKILL, doomed.log_tail()
    return table_id, op_id, doomed


STEPS = {
    "create": "create_table",
    "add": "add_column",
    "drop_column": "drop_column",
    "drop_table": "drop_table",
}
# The steps each kind records: a removal copies the column's values to the trash first.
DONE = {kind: [step, "verify"] for kind, step in STEPS.items()} | {
    "drop_column": ["copy_to_trash", "drop_column", "verify"]
}
# Every saga kind, at every boundary of both its steps: before the DDL, after it (not recorded yet),
# and after its completion is committed (with the verification's: the outcome).
KILL_POINTS = [
    (f"{step}:{where}", kind)
    for kind in STEPS
    for step in (STEPS[kind], "verify")
    for where in ("before_action", "after_action", "after_record")
]


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.parametrize(("kill_at", "kind"), KILL_POINTS, ids=[f"{kind}-{k}" for k, kind in KILL_POINTS])
def test_worker_killed_mid_saga_is_recovered_by_another_worker(
    service_env: dict[str, str],
    core_db: str,
    byodb_pg_url: str,
    procs: Spawn,
    kill_at: str,
    kind: str,
    record_property: Any,
) -> None:
    _, base_url = start_server(procs, service_env, "--no-worker")
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        table_id, op_id, doomed = killed_mid_saga(procs, service_env, client, kind, kill_at)
        died_at = time.monotonic()
        assert f"killing process {doomed.pid} at {kill_at}" in doomed.stderr()
        # Its job is held by a dead worker; unless the outcome was already committed, the saga is
        # stuck half-way. The step before the verification is recorded with it, in the outcome's
        # transaction: after either one's record, the outcome is there.
        if not kill_at.endswith(":after_record"):
            assert operation(client, op_id)["status"] in ("pending", "running")
            assert show(client, table_id)["synced"] is False
        assert jobs_by_status(core_db).get("doing") == 1

        rescuer = start_worker(procs, service_env, "rescuer-worker")
        started_at = time.monotonic()
        op = wait_finished(client, op_id, timeout=45)
        wait_until("the dead worker's job is finished", lambda: "doing" not in jobs_by_status(core_db), 30)
        done_at = time.monotonic()
        recovery = done_at - died_at
        print(
            f"{kind} {kill_at}: recovered {recovery:.2f}s after the kill "
            f"({done_at - started_at:.2f}s after the new worker was up)"
        )
        record_property("recovery_seconds", round(recovery, 2))

        assert op["status"] == "completed", op
        assert op["steps_done"] == DONE[kind]
        table = assert_consistent(client, byodb_pg_url, table_id)
        if kind == "create":
            assert set(table["columns"]) == {"id", "name", "created_at", "updated_at"}
        elif kind == "add":
            assert table["columns"]["age"]["type"] == "integer"
        elif kind == "drop_column":
            assert "age" not in table["columns"]
        else:
            assert table["exists"] is False
        # The re-run step was idempotent and the saga finished once.
        assert outcome_events(client, table_id, op_id) == [
            {
                "create": "TableCreationConfirmed",
                "add": "TableChangeConfirmed",
                "drop_column": "TableChangeConfirmed",
                "drop_table": "TableDeletionConfirmed",
            }[kind]
        ]
    assert rescuer.returncode is None, rescuer.log_tail()


COMPENSATION_KILL_POINTS = ["add_column:before_compensation", "add_column:after_compensation"]


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.parametrize("kill_at", COMPENSATION_KILL_POINTS)
def test_worker_killed_during_compensation_is_recovered_by_another_worker(
    service_env: dict[str, str], core_db: str, byodb_pg_url: str, procs: Spawn, kill_at: str
) -> None:
    from tests.integration.test_saga_flow import RETYPE_AGE_TRIGGER, run_sql

    _, base_url = start_server(procs, service_env, "--no-worker")
    worker = start_worker(procs, service_env, "worker")
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        table_id, _ = create_table(client, "victim")
        wait_synced(client, table_id)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log_tail()
        # The added column's verification will fail, so the saga compensates; the worker dies there.
        run_sql(byodb_pg_url, RETYPE_AGE_TRIGGER)
        doomed = start_worker(procs, service_env, "doomed-worker", SCHEMASAGA_KILL_AT=kill_at)
        op_id = change_column(client, table_id, "age", "integer")
        assert doomed.wait(30) == -signal.SIGKILL, doomed.log_tail()
        assert operation(client, op_id)["status"] in ("pending", "running")

        start_worker(procs, service_env, "rescuer-worker")
        op = wait_finished(client, op_id, timeout=45)
        assert op["status"] == "rejected" and op["detail"]["compensating"] is True, op
        table = assert_consistent(client, byodb_pg_url, table_id)
        assert "age" not in table["columns"]
        assert outcome_events(client, table_id, op_id) == ["TableChangeRejected"]
        assert "doing" not in jobs_by_status(core_db)


@pytest.mark.fault
def test_sigterm_while_a_job_waits_on_a_lock_finishes_the_job_and_exits_cleanly(
    service_env: dict[str, str], core_db: str, byodb_pg_url: str, procs: Spawn
) -> None:
    # The ALTER must outwait the lock (held for a second or two here), not give up and be retried.
    env = {**service_env, "SCHEMASAGA_DDL_LOCK_TIMEOUT_MS": "30000"}
    _, base_url = start_server(procs, env, "--no-worker")
    worker = start_worker(procs, env, "worker")
    byodb = byodb_pg_url.replace("postgresql+psycopg://", "postgresql://")
    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(byodb) as conn:
            conn.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    def waiting_ddl() -> int:
        with psycopg.connect(byodb, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = %s AND NOT l.granted",
                (TABLE,),
            ).fetchone()
        return int(row[0]) if row else 0

    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        table_id, _ = create_table(client, TABLE)
        wait_synced(client, table_id)

        holder = threading.Thread(target=hold_lock)
        holder.start()
        try:
            assert locked.wait(10)
            op_id = change_column(client, table_id, "age", "integer")
            wait_until("the worker's ALTER waits on the lock", waiting_ddl, timeout=10)
            worker.signal(signal.SIGTERM)
            worker.wait_for_log("Stop requested", timeout=5)
            # The job is still in hand: the worker must not exit before finishing it.
            assert worker.returncode is None
            assert operation(client, op_id)["status"] == "running"
        finally:
            release.set()
            holder.join(10)
        began = time.monotonic()
        code = worker.wait(30)
        print(f"worker exited with {code} {time.monotonic() - began:.2f}s after the lock was released")
        assert code == 0, worker.log_tail()

        # No other worker ever ran: the operation is finished because the stopped worker finished it,
        # at its first attempt (neither released for another worker nor failed and retried).
        op = operation(client, op_id)
        assert (op["status"], op["attempts"]) == ("completed", 1), op
        assert op["steps_done"] == ["add_column", "verify"], op
        table = assert_consistent(client, byodb_pg_url, table_id)
        assert table["columns"]["age"]["type"] == "integer"
        assert outcome_events(client, table_id, op_id) == ["TableChangeConfirmed"]
    assert "doing" not in jobs_by_status(core_db)


# The same recovery with the BYODB on SQLite and on MariaDB, at the boundary that matters most for
# each saga kind: the DDL done, its completion not recorded (the rescuer's re-run must find it done).
OTHER_ENGINE_KILL_POINTS = [
    ("create_table:after_action", "create"),
    ("add_column:after_action", "add"),
    ("drop_column:after_action", "drop_column"),
    ("drop_table:after_action", "drop_table"),
]


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.parametrize("engine", [pytest.param("sqlite"), pytest.param("mysql", marks=pytest.mark.mariadb)])
@pytest.mark.parametrize(
    ("kill_at", "kind"), OTHER_ENGINE_KILL_POINTS, ids=[kind for _, kind in OTHER_ENGINE_KILL_POINTS]
)
def test_worker_killed_after_the_ddl_on_sqlite_and_mariadb(
    request: pytest.FixtureRequest, core_db: str, procs: Spawn, engine: str, kill_at: str, kind: str
) -> None:
    from cryptography.fernet import Fernet

    from tests.acceptance.conftest import FAST_ENV, clean_env

    byodb_url: str = request.getfixturevalue(
        {"sqlite": "byodb_sqlite_url", "mysql": "byodb_mysql_url"}[engine]
    )
    env = clean_env(
        SCHEMASAGA_DATABASE_URL=core_db,
        SCHEMASAGA_BYODB_URL=byodb_url,
        SCHEMASAGA_SECRET_KEY=Fernet.generate_key().decode("ascii"),
        **FAST_ENV,
    )
    _, base_url = start_server(procs, env, "--no-worker")
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        table_id, op_id, _ = killed_mid_saga(procs, env, client, kind, kill_at)

        rescuer = start_worker(procs, env, "rescuer-worker")
        op = wait_finished(client, op_id, timeout=45)
        assert op["status"] == "completed", op
        assert op["steps_done"] == DONE[kind]
        assert len(outcome_events(client, table_id, op_id)) == 1
        table = wait_synced(client, table_id)
        assert table["exists"] is (kind != "drop_table")
        # Metadata equals the live schema, as the engine itself reports it.
        drift = client.get("/v1/databases/default/drift").json()
        assert drift["clean"] is True and drift["unmanaged_tables"] == [], drift
    assert rescuer.returncode is None, rescuer.log_tail()
