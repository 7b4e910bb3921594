"""``schemasaga worker --metrics-listen HOST:PORT``: the worker's ``/metrics``, ``/healthz`` and ``/readyz``
on uvicorn, beside the worker in its event loop.

With ``PROMETHEUS_MULTIPROC_DIR`` set, the port is bound with ``SO_REUSEPORT``: every worker of the host
may be given the same address, the kernel hands each scrape to one of them, and any of them answers the
sum over every process writing to the directory (as any process of ``serve --workers N`` does). Without
it, each worker answers its own figures and needs a port of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from schemasaga.config import ConfigurationError, Settings
from schemasaga.domain import access
from schemasaga.observability import metrics

if TYPE_CHECKING:
    from schemasaga.bootstrap import Container

log = logging.getLogger(__name__)

SETTING = "--metrics-listen (SCHEMASAGA_WORKER_METRICS_LISTEN)"
# Scrapes and probes at once; more are answered 503 by uvicorn: a flood must not starve the jobs.
_MAX_CONNECTIONS = 32


def listen_socket(settings: Settings) -> socket.socket | None:
    """The endpoint's socket, bound and listening (None: no endpoint configured). A malformed address, or
    one that cannot be bound, stops the start (before the core database is touched)."""
    if not settings.worker_metrics_listen.strip():
        return None
    try:
        host, port = access.parse_listen_address(settings.worker_metrics_listen)
    except ValueError as exc:
        raise ConfigurationError(f"invalid {SETTING}: {exc}") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if metrics.multiprocess_dir() is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"{SETTING}: cannot listen on {url(host, port)}: {exc.strerror or exc}"
        ) from None
    return sock


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serving(container: Container, sock: socket.socket | None) -> AsyncIterator[None]:
    """Answer on ``sock`` (if any) while the body runs; stop answering when it ends."""
    if sock is None:
        yield
        return
    import uvicorn

    host, port = sock.getsockname()[:2]
    endpoint, tokens_required = container.worker_endpoint(host=host)
    s = container.settings
    config = uvicorn.Config(
        endpoint,
        log_level=(s.log_level or "INFO").lower(),
        log_config=None,  # uvicorn's loggers go to the process's one handler, in its format
        lifespan="off",
        limit_concurrency=_MAX_CONNECTIONS,
        timeout_graceful_shutdown=2,
    )
    server = _server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    shared = (
        " (the sum over PROMETHEUS_MULTIPROC_DIR; the port may be shared)"
        if metrics.multiprocess_dir()
        else ""
    )
    log.info(
        "metrics: /metrics, /healthz and /readyz on %s%s; /metrics %s",
        url(host, port),
        shared,
        "takes a read token limited to no database" if tokens_required else "takes no token",
    )
    try:
        yield
    finally:
        server.should_exit = True
        try:
            await task
        except Exception:
            log.exception("the metrics endpoint failed")
        sock.close()


def _server(config: Any) -> Any:
    """uvicorn's server, without its SIGINT/SIGTERM handlers: the worker's own (``run_worker``) stop it."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)
