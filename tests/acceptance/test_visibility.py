"""Visibility of the real processes: ``schemasaga serve --no-worker`` and a ``schemasaga worker`` sharing
one PROMETHEUS_MULTIPROC_DIR, logging at DEBUG in the default format of a process whose stderr is a
file (JSON).

The API's ``/metrics`` shows the saga the other process ran; every log line of both processes is a JSON
object, the request's lines carry its request id and operation id, the worker's its operation id; and a
password in a registered database's URL appears in no line of either, at DEBUG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.acceptance.conftest import Spawn, start_server, wait_finished

pytestmark = pytest.mark.acceptance

PASSWORD = "pw-Zq8vX3kT9-never-logged"


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def json_lines(text: str, who: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        if raw.strip():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                raise AssertionError(f"{who}: a log line that is not JSON: {raw!r}") from None
    return lines


def test_metrics_of_every_process_and_json_logs_without_secrets(
    service_env: dict[str, str], second_pg_url: str, tmp_path: Path, procs: Spawn
) -> None:
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {**service_env, "SCHEMASAGA_LOG_LEVEL": "DEBUG", "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    server, base = start_server(procs, env, "--no-worker")
    worker = procs("worker", ["worker"], env)
    url = make_url(second_pg_url).set(password=PASSWORD).render_as_string(hide_password=False)

    with httpx.Client(base_url=base, timeout=10) as client:
        r = client.post(
            "/v1/databases", json={"name": "guarded", "url": url}, headers={"X-Request-Id": "reg-1"}
        )
        assert r.status_code == 201, r.text
        assert PASSWORD not in r.text
        r = client.post(
            "/table/create",
            json={"name": "seen", "database": "guarded"},
            headers={"X-Request-Id": "req-seen-1"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "req-seen-1"
        operation_id = r.json()["operation_id"]
        assert wait_finished(client, operation_id)["status"] == "completed"

        text = client.get("/metrics").text
        pg = {"kind": "create_table", "engine": "postgresql"}
        assert metric(text, "schemasaga_operations_accepted_total", **pg) == 1  # in the API process
        # In the worker process, read from the shared directory by the API's /metrics.
        assert metric(text, "schemasaga_operations_finished_total", **pg, outcome="completed") == 1
        assert metric(text, "schemasaga_saga_duration_seconds_count", **pg, outcome="completed") == 1
        route = {"method": "POST", "route": "/table/create", "status": "200"}
        assert metric(text, "schemasaga_http_request_duration_seconds_count", **route) == 1
        assert metric(text, "schemasaga_core_database_up") == 1

        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert set(r.json()["checks"]) == {"core_database", "schema"}  # --no-worker: no worker to check

    worker.stop()
    server.stop()
    for proc in (server, worker):
        output = proc.stderr() + proc.stdout()
        assert PASSWORD not in output, proc.name

    served = json_lines(server.stderr(), "serve")
    worked = json_lines(worker.stderr(), "worker")
    assert {line["level"] for line in served} >= {"DEBUG", "INFO"}
    # uvicorn's access line of the request, in the one format, with the ids of the request and of the
    # operation it accepted.
    access = [
        line
        for line in served
        if line["logger"] == "uvicorn.access" and "POST /table/create" in line["message"]
    ]
    assert len(access) == 1
    assert access[0]["request_id"] == "req-seen-1"
    assert access[0]["operation_id"] == operation_id
    # The worker's lines about the saga carry its operation id; procrastinate's lines are JSON as well.
    assert any(line.get("operation_id") == operation_id for line in worked)
    assert any(line["logger"].startswith("procrastinate") for line in worked)
