"""``schemasaga serve --workers N``: N API processes on one port, kept running by the process ``serve``
started as.

- ``/metrics`` answered by any of the processes is the sum over all of them: requests spread over both
  processes (read from the metric files each process writes), and every scrape, whichever process
  answered it, counts all of them. The directory is the one the supervisor made and removes at the end.
- SIGTERM stops every process, exit status 0.
- On the embedded default the processes share the supervisor's embedded PostgreSQL; a process killed
  with SIGKILL is started again while the other goes on answering; when the supervisor itself is
  killed, its processes stop by themselves and the last one stops the embedded server.
"""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.acceptance.conftest import (
    Proc,
    Spawn,
    clean_env,
    create_table,
    postmasters,
    start_server,
    wait_synced,
    wait_until,
)
from tests.acceptance.test_embedded_cli import data_dir  # noqa: F401  (fixture: stops a leftover postgres)
from tests.acceptance.test_visibility import metric

pytestmark = pytest.mark.acceptance

ROUTE = {"method": "GET", "route": "/v1/tables", "status": "200"}
SCRAPE = {"method": "GET", "route": "/metrics", "status": "200"}


def api_processes(server: Proc) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.pid).children() if p.status() != psutil.STATUS_ZOMBIE]


def requests_per_process(prom_dir: Path, labels: dict[str, str]) -> Counter[int]:
    """Requests of one route answered by each process, read from the histogram file each one writes
    (``histogram_<pid>.db``, where each bucket holds its own observations), not through any /metrics."""
    counts: Counter[int] = Counter()
    for path in prom_dir.glob("histogram_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, sample_labels, _ = json.loads(key)
            sample_labels.pop("le", None)
            if sample == "schemasaga_http_request_duration_seconds_bucket" and sample_labels == labels:
                counts[pid] += int(value)
    return +counts


def new_connections(base: str) -> httpx.Client:
    """A client that opens a new connection for each request: the kernel picks which process accepts it."""
    return httpx.Client(base_url=base, timeout=10, headers={"Connection": "close"})


def test_metrics_of_any_process_sum_every_process(service_env: dict[str, str], procs: Spawn) -> None:
    env = {k: v for k, v in service_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server, base = start_server(procs, env, "--workers", "2", "--no-worker")
    children = wait_until(
        "2 API processes", lambda: len(api_processes(server)) == 2 and api_processes(server), 30
    )
    prom_dir = Path(children[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
    assert prom_dir.is_dir()
    pids = {p.pid for p in children}

    # Requests from 16 threads at once, in rounds, until both processes answered some (the kernel shares
    # connections between them, with no promise of how).
    clients = [new_connections(base) for _ in range(16)]
    sent = 0
    for _ in range(20):
        threads = [
            threading.Thread(target=lambda c=c: c.get("/v1/tables").raise_for_status()) for c in clients
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent += len(threads)
        if set(requests_per_process(prom_dir, ROUTE)) == pids:
            break
    # A request is counted just after its answer is sent: wait for the last ones.
    per_process = wait_until(
        f"{sent} requests counted",
        lambda: sum((c := requests_per_process(prom_dir, ROUTE)).values()) == sent and c,
        10,
    )
    assert set(per_process) == pids, per_process

    # Every scrape counts every process's requests, whichever process answers it; scrape until both have.
    for _ in range(200):
        text = clients[0].get("/metrics").text
        assert metric(text, "schemasaga_http_request_duration_seconds_count", **ROUTE) == sent
        if set(requests_per_process(prom_dir, SCRAPE)) == pids:
            break
    assert set(requests_per_process(prom_dir, SCRAPE)) == pids

    for client in clients:
        client.close()
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0
    assert not prom_dir.exists()  # the supervisor's own directory goes with it


def test_processes_share_the_embedded_server_and_come_back_after_a_kill(
    data_dir: Path,  # noqa: F811
    procs: Spawn,
) -> None:
    env = clean_env(SCHEMASAGA_DATA_DIR=str(data_dir), SCHEMASAGA_JOB_POLLING_INTERVAL="0.2")
    server, base = start_server(procs, env, "--workers", "2")
    children = wait_until(
        "2 API processes", lambda: len(api_processes(server)) == 2 and api_processes(server), 30
    )
    assert (
        len(postmasters(data_dir.resolve() / "pgdata")) == 1
    )  # one server for the supervisor and both processes

    killed = children[0]
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    with httpx.Client(base_url=base, timeout=10) as client:
        # The other process answers meanwhile, and its worker runs the saga.
        table_id, _ = create_table(client, "while_one_is_down")
        assert wait_synced(client, table_id)["exists"] is True
        replaced = wait_until(
            "a new API process",
            lambda: len(now := api_processes(server)) == 2 and killed.pid not in {p.pid for p in now},
            30,
        )
        assert replaced
        assert len(postmasters(data_dir.resolve() / "pgdata")) == 1
    server.wait_for_log("ended with signal SIGKILL", 5)

    # The supervisor killed: its processes stop by themselves, and the last one stops the embedded server.
    survivors = api_processes(server)
    server.signal(signal.SIGKILL)
    server.wait(10)
    wait_until(
        "the API processes stopped",
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in survivors),
        30,
    )
    wait_until("the embedded server stopped", lambda: not postmasters(data_dir.resolve() / "pgdata"), 30)
