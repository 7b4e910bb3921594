"""``schemasaga serve`` (the API, and by default a worker in the same process) and ``schemasaga worker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from schemasaga.cli.base import configure_logging, data_dir_option, settings
from schemasaga.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on (default 8000).")
@data_dir_option
@click.option("--worker/--no-worker", default=True, help="Run a worker in each API process (default on).")
@click.option(
    "--workers",
    "processes",
    type=click.IntRange(1, 64),
    default=1,
    help="API processes sharing the port (default 1); more than one are kept running by this process.",
)
# Internal: the listening socket a process of `serve --workers N` inherits from its supervisor, and the
# supervisor's pid.
@click.option("--listen-fd", type=int, default=None, hidden=True)
@click.option("--supervisor", type=int, default=None, hidden=True)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    worker: bool,
    processes: int,
    listen_fd: int | None,
    supervisor: int | None,
) -> None:
    """Run the HTTP API (and, by default, an in-process worker)."""
    s = settings(host=host, port=port, data_dir=data_dir)
    configure_logging(s)
    if processes > 1 and listen_fd is None:
        from schemasaga.cli.supervisor import supervise

        if supervise(s, processes=processes, with_worker=worker) != 0:
            raise SystemExit(1)
        return
    _start_tracing()
    try:
        status = _run_loop(_serve(s, with_worker=worker, listen_fd=listen_fd, supervisor=supervisor))
    finally:
        _process_exiting()
    if status != 0:
        raise SystemExit(1)


async def _serve(
    s: Settings, *, with_worker: bool, listen_fd: int | None = None, supervisor: int | None = None
) -> int:
    """Serve until signalled (0), or until the in-process worker fails for good (1): a process that
    answers requests but runs no job must not go on looking healthy. ``listen_fd``: accept on that
    inherited socket (one of the processes of ``serve --workers N``, whose supervisor is
    ``supervisor``) instead of binding one."""
    import uvicorn

    from schemasaga.bootstrap import describe_access, open_container
    from schemasaga.worker import run_worker

    async with open_container(s) as container:
        if listen_fd is None:  # the supervisor said it once for all its processes
            for line in describe_access(s):
                log.info("%s", line)
        config = uvicorn.Config(
            container.web_app(with_worker=with_worker),
            host=s.host,
            port=s.port,
            log_level=(s.log_level or "INFO").lower(),
            # uvicorn's loggers propagate to the process's one handler (configure_logging), in its format.
            log_config=None,
            lifespan="off",
        )
        server = _server_class()(config)
        failed: list[BaseException] = []
        worker_task: asyncio.Task[None] | None = None
        if with_worker:
            worker_task = asyncio.create_task(
                run_worker(container.worker, concurrency=s.worker_concurrency, stop_on_signals=False)
            )

            def worker_ended(task: asyncio.Task[None]) -> None:
                if task.cancelled():
                    return
                error = task.exception()
                failed.append(error or RuntimeError("the worker returned"))
                log.error("the in-process worker ended; stopping the service", exc_info=error)
                server.should_exit = True

            worker_task.add_done_callback(worker_ended)
        sockets: list[socket.socket] | None = None
        orphan_watch: asyncio.Task[None] | None = None
        if listen_fd is not None:
            sockets = [socket.socket(fileno=listen_fd)]
        if supervisor is not None:
            orphan_watch = asyncio.create_task(_stop_when_orphaned(server, supervisor))
        feed_stop = asyncio.create_task(_end_feeds_when_stopping(server, container.feed))
        try:
            # uvicorn handles SIGINT/SIGTERM and returns once in-flight requests are done.
            await server.serve(sockets=sockets)
        finally:
            feed_stop.cancel()
            if orphan_watch is not None:
                orphan_watch.cancel()
            if worker_task is not None and not worker_task.done():
                worker_task.cancel()  # procrastinate finishes the job in hand, then stops
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
    return 1 if failed else 0


async def _end_feeds_when_stopping(server: Any, feed: Any) -> None:
    """uvicorn stops once the answers in progress are done, and a live feed's never is: end the feeds
    (their clients resume with Last-Event-ID, here after a restart or at another process) as soon as the
    server is asked to stop, whichever way (a signal, the supervisor's death)."""
    while not server.should_exit:
        await asyncio.sleep(0.2)
    feed.stop()


async def _stop_when_orphaned(server: Any, supervisor: int) -> None:
    """A process of ``serve --workers N`` whose supervisor died (``kill -9``) stops too, rather than go on
    holding the port with nobody to restart it or to stop it. (Its parent changes when it dies.)"""
    while os.getppid() == supervisor:
        await asyncio.sleep(1.0)
    log.error("the supervising `serve` process (pid %d) is gone; stopping", supervisor)
    server.should_exit = True


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises the SIGTERM/SIGINT it caught once it has stopped, which would kill the
        process before the worker, the pools and the embedded PostgreSQL are stopped: keep the
        graceful stop, drop the re-raise."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server


@click.command()
@data_dir_option
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Jobs run at once (default 8).")
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    default=None,
    help="Serve /metrics, /healthz and /readyz there: an IP address and a port, or a port on 127.0.0.1 "
    "(default: nowhere, or SCHEMASAGA_WORKER_METRICS_LISTEN). /metrics takes a token as serve's does.",
)
def worker(data_dir: Path | None, concurrency: int | None, metrics_listen: str | None) -> None:
    """Run saga jobs only. Any number of workers may share one core database."""
    s = settings(data_dir=data_dir, worker_concurrency=concurrency, worker_metrics_listen=metrics_listen)
    configure_logging(s)
    _start_tracing()

    from schemasaga.bootstrap import open_container
    from schemasaga.cli.worker_endpoint import listen_socket, serving
    from schemasaga.worker import run_worker

    endpoint = listen_socket(s)

    async def _run() -> None:
        async with open_container(s) as container, serving(container, endpoint):
            await run_worker(container.worker, concurrency=s.worker_concurrency, stop_on_signals=True)

    try:
        _run_loop(_run())
    finally:
        _process_exiting()


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop when it is installed: the API and the worker spend most of their
    CPU in the event loop (sockets to the core database and to the clients), where uvloop's is about
    twice as fast as asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _start_tracing() -> None:
    from schemasaga.config import ConfigurationError
    from schemasaga.observability import tracing

    try:
        if tracing.configure():
            log.info("tracing: exporting spans over OTLP")
    except tracing.TracingUnavailable as exc:
        raise ConfigurationError(str(exc)) from None


def _process_exiting() -> None:
    from schemasaga.observability import metrics, tracing

    metrics.process_exiting()
    tracing.shutdown()
