"""Workers killed inside the trash's sagas (issue 9): a table deleted into the trash, restored, a
column removed into the trash and restored, a table purged. For each step of each of these, a worker
SIGKILLs itself once the step's DDL ran but before its completion is recorded
(``SCHEMASAGA_KILL_AT=<step>:after_action``); a fresh worker takes the stalled job back and runs the
step again, which finds its work done (inspect-first). After each, the operation is completed, the rows
are all there (checksum ordered by primary key), and the service's consistency and drift checks are
clean (the trash tables are the trash entries', never unmanaged tables). ``make trash-faults`` runs it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa

from tests.fault.harness import Process, Service, check_consistency, settle

pytestmark = [
    pytest.mark.fault,
    pytest.mark.acceptance,
    pytest.mark.slow,
    # About a minute of worker kills: `make trash-faults` runs it, `make test` does not.
    pytest.mark.skipif(not os.environ.get("SCHEMASAGA_TRASH_FAULTS"), reason="make trash-faults runs it"),
]

ROWS = 500


def _checksum(url: str, table: str) -> str:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f'SELECT id, name, score FROM "{table}" ORDER BY id')).all()
    finally:
        engine.dispose()
    return hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()


def _stop(worker: Process) -> None:
    assert worker.terminate(timeout=30) == 0, worker.log()[-3000:]


def _killed_at(svc: Service, c: httpx.Client, point: str, request: Callable[[], httpx.Response]) -> str:
    """Send the request with only a worker that dies at ``point``, then let a rescuer finish it."""
    doomed = svc.start_worker(SCHEMASAGA_KILL_AT=point, SCHEMASAGA_WORKER_CONCURRENCY="1")
    r = request()
    assert r.status_code == 202, r.text
    doomed.popen.wait(timeout=60)
    assert f"killing process {doomed.pid} at {point}" in doomed.log(), doomed.log()[-3000:]
    rescuer = svc.start_worker()
    try:
        settle(c, timeout=60)
    finally:
        _stop(rescuer)
    op = c.get(f"/v1/operations/{r.json()['operation_id']}").json()
    assert op["status"] == "completed", (point, op)
    return str(r.json()["operation_id"])


def _trash_id(c: httpx.Client) -> str:
    [entry] = c.get("/v1/trash").json()
    return str(entry["trash_id"])


def test_the_trash_sagas_survive_a_kill_after_each_step(make_service: Callable[..., Service]) -> None:
    svc = make_service()
    svc.start_server()
    setup = svc.start_worker()
    with svc.client() as c:
        r = c.post("/v1/tables", json={"name": "kept", "columns": [{"name": "score", "type": "integer"}]})
        table_id = r.json()["table_id"]
        settle(c, timeout=60)
        engine = sa.create_engine(svc.physical_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO kept (id, name, score) VALUES (:id, :name, :score)"),
                [{"id": i, "name": f"n{i}", "score": i * 3} for i in range(1, ROWS + 1)],
            )
        engine.dispose()
        before = _checksum(svc.physical_url, "kept")
        _stop(setup)

        base = f"/v1/tables/{table_id}"
        _killed_at(svc, c, "drop_table:after_action", lambda: c.delete(base))
        check_consistency(c, svc.physical_url)
        _killed_at(svc, c, "restore_table:after_action", lambda: c.post(f"/v1/trash/{_trash_id(c)}/restore"))
        assert _checksum(svc.physical_url, "kept") == before
        check_consistency(c, svc.physical_url)

        for point in ("copy_to_trash:after_action", "drop_column:after_action"):
            _killed_at(svc, c, point, lambda: c.delete(f"{base}/columns/score"))
            check_consistency(c, svc.physical_url)
            restore_point = "fill:after_action" if point.startswith("copy") else "add_column:after_action"
            _killed_at(svc, c, restore_point, lambda: c.post(f"/v1/trash/{_trash_id(c)}/restore"))
            assert _checksum(svc.physical_url, "kept") == before
            check_consistency(c, svc.physical_url)
        _killed_at(svc, c, "drop_column:after_action", lambda: c.delete(f"{base}/columns/score"))
        _killed_at(svc, c, "discard_trash:after_action", lambda: c.post(f"/v1/trash/{_trash_id(c)}/restore"))
        assert _checksum(svc.physical_url, "kept") == before

        _killed_at(svc, c, "drop_table:after_action", lambda: c.delete(base))
        _killed_at(svc, c, "purge:after_action", lambda: c.delete(f"/v1/trash/{_trash_id(c)}"))
        assert c.get("/v1/trash").json() == []
        check_consistency(c, svc.physical_url)
        drift = c.get("/v1/databases/default/drift").json()
        assert drift["clean"] is True and drift["unmanaged_tables"] == [], drift
