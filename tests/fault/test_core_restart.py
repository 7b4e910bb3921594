"""Item 3 for real: the core PostgreSQL server itself is stopped and started again under load. The
core runs on an embedded cluster this test owns (the shared server cannot be restarted safely); the
BYODB stays on the local server. API and workers must reconnect on their own and every command that
was answered 200 must reach an outcome."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemasaga.coredb.embedded import EmbeddedPostgres
from schemasaga.coredb.migrations import upgrade
from tests.fault.harness import (
    Service,
    assert_faults_hit_live_traffic,
    check_consistency,
    create_table,
    settle,
    start_load,
    wait_accepted_since,
)
from tests.fault.test_process_faults import _check_accepted, _mixed_command, _statuses

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow]


@pytest.fixture
def core_server() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp_path: pytest makes its base folder 0700, which locks out the server's user.
    folder = Path(tempfile.mkdtemp(prefix="schemasaga-core-restart-"))
    server = EmbeddedPostgres(folder / "data")
    server.start()
    try:
        server.ensure_database("core")
        upgrade(server.conninfo("core"))
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_core_server_restart_under_load_loses_no_accepted_command(
    core_server: EmbeddedPostgres, byodb_pg_url: str, tmp_path: Path
) -> None:
    svc = Service(
        core_conninfo=core_server.conninfo("core"),
        byodb_url=byodb_pg_url,
        physical_url=byodb_pg_url,
        workdir=tmp_path,
    )
    try:
        svc.start_server()
        svc.start_worker()
        with svc.client() as c:
            tables = [create_table(c, f"base_{i}")[0] for i in range(4)]
            settle(c, timeout=30)

        # Runs until stopped below (the total is only a cap): a load of a fixed size could end before
        # the last restart on a fast machine, and the restart would then hit no traffic.
        background = start_load(svc.base_url, clients=8, total=100_000, command=_mixed_command(tables))
        outages: list[tuple[float, float]] = []
        for _ in range(2):
            # Each stop hits commands being accepted: the load is live since the previous restart.
            wait_accepted_since(background.result, outages[-1][1] if outages else 0.0, count=10)
            down = time.monotonic()
            core_server.stop()
            time.sleep(1.0)
            core_server.start()
            outages.append((down, time.monotonic()))
        wait_accepted_since(background.result, outages[-1][1], count=10)
        load = background.join(timeout=0)  # stop the clients after their request in flight
        assert_faults_hit_live_traffic(load, outages)
        restarts = [up - down for down, up in outages]
        assert svc.server is not None and svc.server.alive(), svc.logs()[-5000:]
        assert [w for w in svc.processes if w.name.startswith("worker") and not w.alive()] == []
        assert load.accepted, load.answers

        with svc.client() as c:
            settled = settle(c, timeout=60)
            _check_accepted(svc, c, load)
            assert _statuses(c, load) == {"completed": len(load.accepted)}
            check_consistency(c, svc.physical_url)
        # Refused while the server was down (503, nothing written); never a lost or a half-written command.
        assert set(load.answers) <= {200, 503}, load.refusals
        print(
            f"core restarts: {[f'{r:.1f}s' for r in restarts]} down; {len(load.accepted)} accepted, "
            f"answers {load.answers}, transport errors {load.transport_errors}; settled in {settled:.2f}s"
        )
    finally:
        svc.kill_all()
