"""``schemasaga worker --metrics-listen``: a host that runs only workers shows their metrics.

Two ``schemasaga worker`` processes share one PROMETHEUS_MULTIPROC_DIR and one metrics address on
127.0.0.1 (the port bound by both), under ``SCHEMASAGA_AUTH=required``, beside a ``serve --no-worker``
that writes to no such directory. Their ``/metrics`` takes a read token limited to no database, as
``serve``'s does (401 without, 403 with a narrower one), and answers, whichever worker the kernel hands
the scrape to, the sagas both workers ran, summed; once one worker stopped, the other still counts its
sagas. ``/healthz`` and ``/readyz`` are open to probes, anything else a 4xx in the API's error shape.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import CLI, Proc, Spawn, free_port, start_server, wait_finished, wait_until
from tests.acceptance.test_visibility import metric

pytestmark = pytest.mark.acceptance

PG = {"kind": "create_table", "engine": "postgresql"}
DONE = {**PG, "outcome": "completed"}


def sagas_per_process(prom_dir: Path) -> Counter[int]:
    """Sagas completed by each process, read from the counter file each one writes (``counter_<pid>.db``),
    not through any /metrics."""
    counts: Counter[int] = Counter()
    for path in prom_dir.glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample.startswith("schemasaga_operations_finished") and labels == DONE:
                counts[pid] += int(value)
    return +counts


def steps_timed(text: str) -> float:
    """The saga steps of create_table on PostgreSQL timed, whichever their names."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "schemasaga_saga_step_duration_seconds_count"
        and {k: v for k, v in sample.labels.items() if k != "step"} == PG
    )


def start_worker(procs: Spawn, env: dict[str, str], name: str, port: int) -> Proc:
    return procs(name, ["worker", "--concurrency", "1", "--metrics-listen", f"127.0.0.1:{port}"], env)


def test_workers_on_one_host_serve_their_summed_metrics_behind_the_tokens(
    service_env: dict[str, str], tmp_path: Path, procs: Spawn
) -> None:
    env = {**service_env, "SCHEMASAGA_AUTH": "required"}
    prom = tmp_path / "prom"
    prom.mkdir()
    worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    port = free_port()
    # The workers start while serve does.
    workers = [start_worker(procs, worker_env, f"worker{i}", port) for i in (1, 2)]
    _server, base = start_server(procs, env, "--no-worker")
    made = subprocess.run(
        [CLI, "tokens", "create", "--name", "ops", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    admin = {"Authorization": f"Bearer {made.stdout.splitlines()[-1]}"}

    with (
        httpx.Client(base_url=base, timeout=10, headers=admin) as api,
        # A new connection for each request: the kernel picks which worker accepts it.
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"Connection": "close"}) as w,
    ):
        tokens = {}
        for name, databases in (("scraper", None), ("narrow", ["default"])):
            r = api.post("/v1/tokens", json={"name": name, "scope": "read", "databases": databases})
            assert r.status_code == 201, r.text
            tokens[name] = {"Authorization": f"Bearer {r.json()['token']}"}

        def ready() -> bool:
            for proc in workers:
                assert proc.returncode is None, proc.log_tail()
            try:
                r = w.get("/readyz")
            except httpx.TransportError:
                return False
            return r.status_code == 200 and r.json()["checks"]["worker"]["ok"]

        wait_until("both workers ready", lambda: all(ready() for _ in range(6)), 30, every=0.1)

        # Create tables in rounds until both workers ran some (each runs one job at a time).
        operations: list[str] = []
        for round_ in range(10):
            batch = []
            for i in range(4):
                r = api.post("/table/create", json={"name": f"t{round_}_{i}"})
                assert r.status_code == 200, r.text
                batch.append(r.json()["operation_id"])
            for operation_id in batch:
                assert wait_finished(api, operation_id)["status"] == "completed"
            operations += batch
            if len(sagas_per_process(prom)) == 2:
                break
        per_worker = wait_until(
            "every saga counted",
            lambda: sum((c := sagas_per_process(prom)).values()) == len(operations) and c,
            10,
        )
        assert set(per_worker) == {p.pid for p in workers}, per_worker

        # The token serve's /metrics takes, and only that one.
        refused = w.get("/metrics")
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert w.get("/metrics", headers={"Authorization": "Bearer ssg_nope"}).status_code == 401
        assert w.get("/metrics", headers=tokens["narrow"]).status_code == 403
        assert w.get("/metrics", headers=admin).status_code == 200

        # Every scrape, whichever worker answers it, sums both workers' sagas.
        for _ in range(10):
            r = w.get("/metrics", headers=tokens["scraper"])
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/plain")
            text = r.text
            assert metric(text, "schemasaga_operations_finished_total", **DONE) == len(operations)
            assert metric(text, "schemasaga_saga_duration_seconds_count", **DONE) == len(operations)
            assert steps_timed(text) >= len(operations)
            assert metric(text, "schemasaga_core_database_up") == 1
            # Accepted by the API process, which writes to no shared directory: not here.
            assert metric(text, "schemasaga_operations_accepted_total", **PG) == 0

        # Probes are open; anything else is a clear 4xx.
        assert w.get("/healthz").json()["status"] == "ok"
        ready_answer = w.get("/readyz").json()
        assert ready_answer["status"] == "ready"
        assert set(ready_answer["checks"]) == {"core_database", "schema", "worker"}
        assert w.get("/v1/tables").status_code == 404
        post = w.post("/metrics", headers=tokens["scraper"])
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        assert w.get("/metrics", headers={**tokens["scraper"], "Host": "rebound.example"}).status_code == 400

        # One worker stopped: the other answers alone, and still counts the stopped one's sagas.
        workers[0].signal(signal.SIGTERM)
        assert workers[0].wait(30) == 0
        for _ in range(3):
            text = w.get("/metrics", headers=tokens["scraper"]).text
            assert metric(text, "schemasaga_operations_finished_total", **DONE) == len(operations)

    workers[1].stop()
    for proc in workers:
        assert "metrics: /metrics, /healthz and /readyz on http://127.0.0.1:" in proc.stderr()
        for token in (admin, *tokens.values()):
            assert token["Authorization"].rsplit("_", 1)[1] not in proc.stderr() + proc.stdout()
