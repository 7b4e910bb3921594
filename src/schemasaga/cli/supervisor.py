"""``schemasaga serve --workers N``: N API processes on one listening socket, and the process that keeps
them running.

The supervisor (the process ``serve`` started as) does once what the N processes would otherwise race
for (``bootstrap.shared_start``: the settings checked, the key file, the embedded server, the
migrations), binds the listening socket, and starts N ``serve`` processes that inherit it: the kernel
hands each new connection to one of them, as gunicorn and uvicorn's own ``--workers`` do. It serves no
request itself. It holds the embedded server (when there is one) from before the first process starts
to after the last one stopped; each process attaches to that server as any process sharing a data dir
does. Every process writes its metrics to one ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory it makes
when none is set, removed at the end), so ``/metrics`` of any of them answers the sum of all.

A process that dies (a crash, ``kill -9``, its in-process worker failing for good) is started again,
at once when it had run for a while, after a growing pause when it keeps dying young. A process that
exits with status 2 before it ever served (a configuration error) ends the whole service with status 2.
SIGTERM or SIGINT is passed on to every process; each finishes its requests and its job in hand, and
the supervisor exits once they all have (or kills them after ``STOP_GRACE`` seconds).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from schemasaga.config import ConfigurationError, Settings

log = logging.getLogger(__name__)

STOP_GRACE = 60.0
_POLL = 0.1
# A process that ran this long before it died is started again at once; one that dies younger waits
# a pause that doubles each time, up to _MAX_PAUSE.
_HEALTHY_AFTER = 10.0
_FIRST_PAUSE = 0.5
_MAX_PAUSE = 10.0
_CONFIGURATION_ERROR = 2


@dataclass
class _Child:
    slot: int
    popen: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid


def listen(host: str, port: int) -> socket.socket:
    """The socket every API process accepts on (SO_REUSEADDR, as uvicorn sets it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Keeps ``processes`` API processes running on ``sock`` until asked to stop (see the module)."""

    def __init__(self, settings: Settings, *, processes: int, with_worker: bool, sock: socket.socket) -> None:
        self.settings = settings
        self.processes = processes
        self.with_worker = with_worker
        self.sock = sock
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.failed: str | None = None
        self._pauses: dict[int, float] = {}
        self._due: dict[int, float] = {}  # slot -> when its next process starts
        self._served: set[int] = set()  # slots whose process once ran past _HEALTHY_AFTER

    def _command(self) -> list[str]:
        fd = str(self.sock.fileno())
        args = [
            sys.executable,
            "-m",
            "schemasaga.cli",
            "serve",
            "--listen-fd",
            fd,
            "--supervisor",
            str(os.getpid()),
        ]
        args.append("--worker" if self.with_worker else "--no-worker")
        return args

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Flags given to the supervisor reach the processes as settings.
        env["SCHEMASAGA_HOST"] = self.settings.host
        env["SCHEMASAGA_PORT"] = str(self.settings.port)
        env["SCHEMASAGA_DATA_DIR"] = str(self.settings.data_dir)
        return env

    def _start(self, slot: int) -> None:
        popen = subprocess.Popen(
            self._command(), env=self._env(), pass_fds=(self.sock.fileno(),), stdin=subprocess.DEVNULL
        )
        self.children[slot] = _Child(slot, popen)
        log.info("API process %d started (pid %d)", slot, popen.pid)

    def _ask_to_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping the API processes (%s)", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        handled = (signal.SIGTERM, signal.SIGINT)
        originals = {sig: signal.signal(sig, self._ask_to_stop) for sig in handled}
        try:
            for slot in range(self.processes):
                self._start(slot)
            while not self.stopping:
                self._reap()
                self._restart_due()
                time.sleep(_POLL)
            self._stop_all()
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)
        return _CONFIGURATION_ERROR if self.failed is not None else 0

    def _reap(self) -> None:
        from schemasaga.observability import metrics

        for slot, child in list(self.children.items()):
            status = child.popen.poll()
            lived = time.monotonic() - child.started
            if lived >= _HEALTHY_AFTER:
                self._served.add(slot)
                self._pauses.pop(slot, None)
            if status is None:
                continue
            del self.children[slot]
            metrics.process_exiting(child.pid)
            how = f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"
            if status == _CONFIGURATION_ERROR and slot not in self._served:
                self.failed = f"API process {slot} (pid {child.pid}) could not start ({how})"
                log.error("%s: stopping the service", self.failed)
                self.stopping = True
                return
            pause = 0.0 if lived >= _HEALTHY_AFTER else self._pauses.get(slot, _FIRST_PAUSE)
            if lived < _HEALTHY_AFTER:
                self._pauses[slot] = min(pause * 2, _MAX_PAUSE)
            log.error(
                "API process %d (pid %d) ended with %s after %.1fs; starting another in %.1fs",
                slot,
                child.pid,
                how,
                lived,
                pause,
            )
            self._due[slot] = time.monotonic() + pause

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, due in list(self._due.items()):
            if due <= now and not self.stopping:
                del self._due[slot]
                self._start(slot)

    def _stop_all(self) -> None:
        from schemasaga.observability import metrics

        for child in self.children.values():
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in self.children.values():
            try:
                child.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "API process %d (pid %d) still running after %gs: killed",
                    child.slot,
                    child.pid,
                    STOP_GRACE,
                )
                child.popen.kill()
                child.popen.wait()
            metrics.process_exiting(child.pid)
        self.children.clear()


def supervise(settings: Settings, *, processes: int, with_worker: bool) -> int:
    """Run ``processes`` API processes until SIGTERM or SIGINT; the exit status of ``serve``."""
    from schemasaga.bootstrap import describe_access, shared_start
    from schemasaga.observability import metrics

    made_dir: Path | None = None
    if metrics.multiprocess_dir() is None:
        made_dir = Path(tempfile.mkdtemp(prefix="schemasaga-metrics-"))
        os.environ[metrics.MULTIPROC_ENV] = str(made_dir)
    try:
        # The port first: a busy one stops the start before the embedded server is started for nothing.
        with listen(settings.host, settings.port) as sock, shared_start(settings):
            for line in describe_access(settings):
                log.info("%s", line)
            log.info(
                "serving on http://%s:%d with %d API processes%s; metrics of all in %s",
                settings.host,
                settings.port,
                processes,
                ", each with a worker" if with_worker else "",
                os.environ[metrics.MULTIPROC_ENV],
            )
            supervisor = Supervisor(settings, processes=processes, with_worker=with_worker, sock=sock)
            status = supervisor.run()
        if supervisor.failed is not None:
            raise ConfigurationError(f"{supervisor.failed}: see its error above")
        return status
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
            os.environ.pop(metrics.MULTIPROC_ENV, None)
