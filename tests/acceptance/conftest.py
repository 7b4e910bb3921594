"""Real processes: the ``schemasaga`` CLI started as subprocesses, spoken to over HTTP.

Every process a test starts runs in its own process group with its output in a log file under the
test's tmp dir; the ``procs`` fixture terminates whatever is still running at teardown (SIGTERM,
then SIGKILL of the whole group), so a failing test leaves nothing behind.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

CLI = str(Path(sys.executable).with_name("schemasaga"))

# Quick stalled-job detection and polling, short retry delays: recovery in seconds, not minutes.
FAST_ENV = {
    "SCHEMASAGA_JOB_POLLING_INTERVAL": "0.2",
    "SCHEMASAGA_HEARTBEAT_INTERVAL": "0.5",
    "SCHEMASAGA_STALLED_WORKER_TIMEOUT": "3",
    "SCHEMASAGA_RETRY_BASE_DELAY": "0.1",
    "SCHEMASAGA_RETRY_MAX_DELAY": "0.5",
    "SCHEMASAGA_WORKER_CONCURRENCY": "4",
    "SCHEMASAGA_BYODB_CONNECT_TIMEOUT": "2",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any SCHEMASAGA_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMASAGA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerStartupFailed(AssertionError):
    """``schemasaga serve`` exited, or never answered /healthz."""


class Proc:
    """One CLI subprocess in its own process group, its stdout and stderr in files."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [CLI, *args],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.stderr().splitlines()[-lines:])
        return f"--- {self.name} (pid {self.pid}, rc {self.returncode}) stderr tail ---\n{tail}"

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s\n{self.log_tail()}") from None

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.stderr():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited before logging {needle!r}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not log {needle!r} in {timeout}s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL of the whole group if it does not exit in ``grace`` seconds."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Children (if any) go with the group, even when the leader already exited.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(5)


Spawn = Callable[..., Proc]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Spawn]:
    """``spawn(name, args, env)`` starts a CLI process that is stopped at teardown whatever happens.

    Request it *after* the database fixtures (core_db, byodb_pg_url, a data dir): fixtures are torn
    down in reverse order, so the processes stop before their databases are dropped.
    """
    started: list[Proc] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()

    def spawn(name: str, args: list[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, args, env, log_dir)
        started.append(proc)
        return proc

    yield spawn
    for proc in reversed(started):
        proc.stop()
        # Captured, so shown only in the report of a failing test.
        print(proc.log_tail())


def wait_healthy(proc: Proc, port: int, timeout: float = 60.0) -> None:
    """Poll /healthz until the server answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as client:
        while True:
            if proc.returncode is not None:
                raise ServerStartupFailed(f"{proc.name} exited during startup\n{proc.log_tail()}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartupFailed(f"{proc.name} not healthy after {timeout}s\n{proc.log_tail()}")
            time.sleep(0.1)


def start_server(
    spawn: Spawn, env: Mapping[str, str], *extra_args: str, name: str = "server"
) -> tuple[Proc, str]:
    """``schemasaga serve`` on a free port, healthy; returns the process and its base URL."""
    # A port found free may be taken before uvicorn binds it; try again on another one.
    for _ in range(3):
        port = free_port()
        proc = spawn(name, ["serve", "--port", str(port), *extra_args], env)
        try:
            wait_healthy(proc, port)
        except ServerStartupFailed:
            if proc.returncode is not None and "address already in use" in proc.stderr():
                continue
            raise
        return proc, f"http://127.0.0.1:{port}"
    raise ServerStartupFailed("could not find a free port for the server")


@pytest.fixture
def service_env(core_db: str, byodb_pg_url: str) -> dict[str, str]:
    """Environment of a service on a fresh core database and a fresh PostgreSQL BYODB."""
    return clean_env(
        SCHEMASAGA_DATABASE_URL=core_db,
        SCHEMASAGA_BYODB_URL=byodb_pg_url,
        # One key shared by the API and every worker (BYODB credentials are encrypted with it).
        SCHEMASAGA_SECRET_KEY=Fernet.generate_key().decode("ascii"),
        **FAST_ENV,
    )


# -- talking to the service ---------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout}s (last: {last!r})")
        time.sleep(every)


def show(client: httpx.Client, table_id: str) -> dict[str, Any]:
    r = client.post("/table/show", json={"table_id": table_id})
    assert r.status_code == 200, r.text
    table: dict[str, Any] = r.json()["table"]
    return table


def wait_synced(client: httpx.Client, table_id: str, timeout: float = 30.0) -> dict[str, Any]:
    table: dict[str, Any] = wait_until(
        f"table {table_id} synced", lambda: (t := show(client, table_id))["synced"] and t, timeout
    )
    return table


def operation(client: httpx.Client, operation_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/operations/{operation_id}")
    assert r.status_code == 200, r.text
    op: dict[str, Any] = r.json()
    return op


def wait_finished(client: httpx.Client, operation_id: str, timeout: float = 30.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        op = operation(client, operation_id)
        return op if op["status"] in ("completed", "rejected") else None

    op: dict[str, Any] = wait_until(f"operation {operation_id} finished", check, timeout)
    return op


def create_table(client: httpx.Client, name: str) -> tuple[str, str]:
    """POST /table/create; returns (table_id, operation_id)."""
    r = client.post("/table/create", json={"name": name})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    return str(body["table"]["table_id"]), str(body["operation_id"])


def change_column(client: httpx.Client, table_id: str, name: str, type_: str | None = None) -> str:
    """POST /table/column (add with a type, remove without); returns the operation_id."""
    column = {"name": name} if type_ is None else {"name": name, "type": type_}
    r = client.post("/table/column", json={"table_id": table_id, "column": column})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    return str(r.json()["operation_id"])


# -- the physical schema, read independently of the service's own adapter ------------------------

# SQLAlchemy's reflected PostgreSQL type class -> the service's logical column type.
_LOGICAL = {
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "TEXT": "text",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
}


def physical_columns(url: str, table: str) -> dict[str, dict[str, Any]] | None:
    """``{name: {type, nullable, primary_key}}`` of a live PostgreSQL table, None if it is absent."""
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        if not insp.has_table(table):
            return None
        pk = set(insp.get_pk_constraint(table)["constrained_columns"])
        return {
            c["name"]: {
                "type": _LOGICAL.get(type(c["type"]).__name__, str(c["type"]).lower()),
                "nullable": bool(c["nullable"]),
                "primary_key": c["name"] in pk,
            }
            for c in insp.get_columns(table)
        }
    finally:
        engine.dispose()


def metadata_columns(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The same shape from a /table/show answer."""
    return {
        name: {"type": c["type"], "nullable": c["nullable"], "primary_key": c["primary_key"]}
        for name, c in table["columns"].items()
    }


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """Live postmasters serving ``pgdata`` (command line ``postgres -D <pgdata> ...``)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] != "postgres" or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(a == "-D" and Path(b) == pgdata for a, b in itertools.pairwise(cmd)):
            found.append(proc)
    return found
