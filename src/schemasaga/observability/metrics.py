"""The service's Prometheus metrics, and their text exposition for ``GET /metrics``.

Counters and histograms live in this process (prometheus_client's default registry), or, when
``PROMETHEUS_MULTIPROC_DIR`` names a directory, in files there shared by every process of the host
(prometheus_client's multiprocess mode): ``/metrics`` of any ``serve`` then adds up the API and worker
processes writing there. The queue's depth and age are read from the core database at each scrape.

Nothing here is imported by the domain: the saga runner and the drift detector report through the
ports they were given (``services.ports.SagaMetrics``, a drift callback), the unit of work's commits
through ``coredb``'s commit observer, the HTTP layer and the worker call this module directly.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from schemasaga import logcontext
from schemasaga.domain.table import OperationKind
from schemasaga.eventstore import RecordedEvent
from schemasaga.jobs.queries import QueueStats

__all__ = ["CONTENT_TYPE_LATEST", "SAGAS", "CommitMetrics", "SagaMetrics", "exposition"]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

P = ParamSpec("P")


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """Recording a metric runs after the work it measures was committed (a request answered, an outcome
    recorded): a failure to record (a full disk under the multiprocess directory, say) is logged and
    must not turn that work into an error."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            log.exception("recording metrics failed")

    return guarded


# No `_created` series beside every counter and histogram: twice the lines for a start time nobody reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

_SAGA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OPERATIONS_ACCEPTED = Counter(
    "schemasaga_operations_accepted",
    "Operations accepted (committed with their job), by kind and engine of their database.",
    ["kind", "engine"],
)
OPERATIONS_FINISHED = Counter(
    "schemasaga_operations_finished",
    "Operations that reached their outcome (completed or rejected), by kind and engine.",
    ["kind", "engine", "outcome"],
)
SAGA_DURATION = Histogram(
    "schemasaga_saga_duration_seconds",
    "From a worker starting an operation to its outcome committed, in the run that reached it "
    "(earlier failed attempts and their backoff are not included).",
    ["kind", "engine", "outcome"],
    buckets=_SAGA_BUCKETS,
)
STEP_DURATION = Histogram(
    "schemasaga_saga_step_duration_seconds",
    "One saga step: its work on the user's database and its progress committed.",
    ["kind", "engine", "step"],
    buckets=_SAGA_BUCKETS,
)
RETRIES = Counter(
    "schemasaga_saga_retries",
    "Saga attempts that failed transiently and were scheduled again, by the error class that caused it.",
    ["kind", "engine", "cause"],
)
JOBS_RECOVERED = Counter(
    "schemasaga_jobs_recovered",
    "Jobs the watchdog put back to todo: of workers without a heartbeat (stalled_worker), or held by "
    "this worker without running them (lost).",
    ["reason"],
)
DRIFTED_TABLES = Gauge(
    "schemasaga_drifted_tables",
    "Tables found drifted by the last drift scan of each database (any process).",
    ["database"],
    multiprocess_mode="mostrecent",
)
DRIFT_SCANS = Counter("schemasaga_drift_scans", "Drift scans run, by database.", ["database"])
EVENTS_APPENDED = Counter(
    "schemasaga_events_appended",
    "Events appended to the event store (committed), by stream category.",
    ["category"],
)
HTTP_DURATION = Histogram(
    "schemasaga_http_request_duration_seconds",
    "HTTP requests, by method, route template (not the raw path) and status.",
    ["method", "route", "status"],
    buckets=_HTTP_BUCKETS,
)

_ACCEPTING: dict[str, Callable[[Mapping[str, Any]], OperationKind]] = {
    "TableCreated": lambda data: OperationKind.CREATE_TABLE,
    "TableChanged": lambda data: (
        OperationKind.ADD_COLUMN if data.get("action") == "add" else OperationKind.REMOVE_COLUMN
    ),
    "TableDeleted": lambda data: OperationKind.DELETE_TABLE,
    "TableReconciliationRequested": lambda data: OperationKind(data.get("strategy", "repair")),
}


class CommitMetrics:
    """``coredb``'s commit observer: counts the events a unit of work committed and the operations it
    accepted, and binds the operation of its last table event to the current task's log context (so
    that the lines written after it, the access log line of the request that accepted it say, carry it).
    """

    def __init__(self, engine_of: Callable[[str], str | None]) -> None:
        self._engine_of = engine_of

    @_never_raises
    def committed(self, events: Sequence[RecordedEvent], databases: Mapping[str, str]) -> None:
        """``databases``: the database of each table stream the unit of work wrote."""
        last: RecordedEvent | None = None
        counts: dict[str, int] = {}
        for event in events:
            category = (event.stream or "").partition("$")[0] or "other"
            counts[category] = counts.get(category, 0) + 1
            if category != "Table":
                continue
            last = event
            accepted = _ACCEPTING.get(event.event_type)
            if accepted is not None:
                database = databases.get(event.stream or "", "")
                engine = self._engine_of(database) or "unknown"
                OPERATIONS_ACCEPTED.labels(accepted(event.data).value, engine).inc()
        for category, n in counts.items():
            EVENTS_APPENDED.labels(category.lower()).inc(n)
        if last is not None and "operation_id" in last.data:
            logcontext.bind_operation(
                last.data["operation_id"], correlation=last.metadata.get("correlation_id")
            )


class SagaMetrics:
    """The saga runner's metrics port (``services.ports.SagaMetrics``) on Prometheus."""

    @_never_raises
    def step_finished(self, *, kind: str, engine: str, step: str, seconds: float) -> None:
        STEP_DURATION.labels(kind, engine, step).observe(seconds)

    @_never_raises
    def saga_finished(self, *, kind: str, engine: str, outcome: str, seconds: float) -> None:
        OPERATIONS_FINISHED.labels(kind, engine, outcome).inc()
        SAGA_DURATION.labels(kind, engine, outcome).observe(seconds)

    @_never_raises
    def retried(self, *, kind: str, engine: str, error: BaseException) -> None:
        RETRIES.labels(kind, engine, error_class(error)).inc()


SAGAS = SagaMetrics()


def error_class(error: BaseException) -> str:
    """The class of the driver's exception under a classified BYODB error (``LockNotAvailable``,
    ``OperationalError``...): a bounded label, unlike the message."""
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    orig = getattr(cause, "orig", None)
    return type(orig if isinstance(orig, BaseException) else cause).__name__


@_never_raises
def drift_scanned(database: str, drifted: int) -> None:
    DRIFTED_TABLES.labels(database).set(drifted)
    DRIFT_SCANS.labels(database).inc()


@_never_raises
def jobs_recovered(reason: str, count: int) -> None:
    if count:
        JOBS_RECOVERED.labels(reason).inc(count)


@_never_raises
def http_request(*, method: str, route: str, status: int, seconds: float) -> None:
    HTTP_DURATION.labels(method, route, str(status)).observe(seconds)


# -- exposition -----------------------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def check_multiprocess_dir() -> str | None:
    """What is wrong with ``PROMETHEUS_MULTIPROC_DIR`` (None: unset, or a writable directory)."""
    folder = multiprocess_dir()
    if folder is None:
        return None
    if not folder.is_dir():
        return f"{MULTIPROC_ENV}={folder} is not a directory"
    if not os.access(folder, os.W_OK):
        return f"{MULTIPROC_ENV}={folder} is not writable"
    return None


def process_exiting(pid: int | None = None) -> None:
    """In multiprocess mode, drop the live gauges of this process (or of ``pid``, a child that died without
    doing it itself) from the shared directory. Its counters and histograms stay: a sum over processes must
    not go down when one of them ends."""
    folder = multiprocess_dir()
    if folder is not None:
        mark_process_dead(os.getpid() if pid is None else pid, str(folder))  # type: ignore[no-untyped-call]


class _Registered(Collector):
    """This process's own metrics (not multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class _Queue(Collector):
    """The job queue as read from the core database for this scrape (None: it could not be read)."""

    def __init__(self, stats: QueueStats | None) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "schemasaga_core_database_up",
            "Whether this scrape could read the job queue from the core database.",
        )
        up.add_metric([], 0 if self.stats is None else 1)
        yield up
        if self.stats is None:
            return
        jobs = GaugeMetricFamily(
            "schemasaga_jobs",
            "Saga jobs in the queue: ready to run, scheduled for later (a retry's backoff), running.",
            labels=["state"],
        )
        jobs.add_metric(["ready"], self.stats.ready)
        jobs.add_metric(["scheduled"], self.stats.scheduled)
        jobs.add_metric(["doing"], self.stats.doing)
        yield jobs
        age = GaugeMetricFamily(
            "schemasaga_oldest_ready_job_age_seconds",
            "How long the oldest job ready to run has waited (0: none waits).",
        )
        age.add_metric([], self.stats.oldest_ready_age)
        yield age


def exposition(queue: QueueStats | None) -> bytes:
    """The text of ``GET /metrics``: every process's metrics in multiprocess mode, else this one's, and
    the queue."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Registered())
    registry.register(_Queue(queue))
    return generate_latest(registry)
