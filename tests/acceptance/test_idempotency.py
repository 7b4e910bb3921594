"""Concurrent requests with one Idempotency-Key, fired at two real ``schemasaga serve`` processes sharing
one core database: exactly one operation, and every request answered what that one was answered."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.acceptance.conftest import Spawn, start_server, wait_finished
from tests.acceptance.test_concurrency import at_once

pytestmark = [pytest.mark.acceptance]

N = 12


def operations(core_db: str) -> int:
    with psycopg.connect(core_db) as conn:
        row = conn.execute("SELECT count(*) FROM rm_operations").fetchone()
    assert row is not None
    return int(row[0])


def test_concurrent_retries_with_one_key_make_one_operation(
    core_db: str, service_env: dict[str, str], procs: Spawn
) -> None:
    _, first = start_server(procs, service_env, name="api1")
    _, second = start_server(procs, service_env, name="api2")
    with httpx.Client(base_url=first, timeout=30) as client:
        r = client.post("/v1/tables", json={"name": "target"})
        assert r.status_code == 202, r.text
        table_id = r.json()["table_id"]
        wait_finished(client, r.json()["operation_id"])
    before = operations(core_db)

    def fire(path: str, body: dict[str, Any], key: str) -> list[tuple[int, str]]:
        def one(i: int, _: httpx.Client) -> tuple[int, str]:
            # Half of them to each server: the key is taken in the core database, not in a process.
            with httpx.Client(base_url=(first, second)[i % 2], timeout=30) as c:
                answer = c.post(path, json=body, headers={"Idempotency-Key": key})
            assert answer.status_code == 202, answer.text
            return answer.status_code, str(answer.json()["operation_id"])

        return at_once(N, one, first)

    # A reconciliation is accepted however many are asked for: only the key keeps them to one.
    answers = fire(f"/v1/tables/{table_id}/reconcile", {"strategy": "repair"}, "retry-storm-1")
    assert len(set(answers)) == 1, answers
    assert operations(core_db) == before + 1
    # A creation: one table, and no retry is told its name is taken.
    answers = fire("/v1/tables", {"name": "raced"}, "retry-storm-2")
    assert len(set(answers)) == 1, answers
    assert operations(core_db) == before + 2
    with httpx.Client(base_url=second, timeout=30) as client:
        assert wait_finished(client, answers[0][1])["status"] == "completed"
        names = [t["name"] for t in client.get("/v1/tables").json()["items"]]
    assert sorted(names) == ["raced", "target"]
