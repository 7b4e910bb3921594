"""``schemasaga`` with timestamps around each step of a saga, for ``bench.saga_timeline``.

Run as a script by that bench, with the Python of the checkout to trace (this file imports nothing of
the bench, so another worktree's ``schemasaga`` can run under it): ``python trace_launch.py serve ...``.
Every wrapped call appends ``wall-clock seconds, thread, label`` lines to ``$SAGA_TRACE_FILE``.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from typing import Any

_OUT = open(os.environ["SAGA_TRACE_FILE"], "a", buffering=1)
_LOCK = threading.Lock()


def mark(label: str) -> None:
    line = f"{time.time():.6f}\t{threading.current_thread().name}\t{label}\n"
    with _LOCK:
        _OUT.write(line)


def _wrap_async(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"{label} begin")
        try:
            return await original(*args, **kwargs)
        finally:
            mark(f"{label} end")

    setattr(owner, name, wrapper)


def _wrap_sync(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"{label} begin")
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"{label} end")

    setattr(owner, name, wrapper)


def install() -> None:
    import procrastinate.manager
    import procrastinate.worker
    from sqlalchemy.engine import Engine

    from schemasaga.byodb import adapter as byodb_adapter
    from schemasaga.coredb import notices
    from schemasaga.services import tables, unit_of_work
    from schemasaga.services.sagas import runner

    _wrap_async(tables.TableCommands, "create_table", "api.create_table")
    _wrap_async(unit_of_work.UnitOfWork, "run", "uow.run")
    _wrap_async(unit_of_work.UnitOfWork, "load_table", "saga.load_table")
    _wrap_async(unit_of_work.UnitOfWork, "start_operation", "saga.start_operation")
    _wrap_async(procrastinate.manager.JobManager, "fetch_job", "job.fetch")
    _wrap_async(procrastinate.manager.JobManager, "finish_job", "job.finish")
    _wrap_async(procrastinate.worker.Worker, "_handle_notification", "job.notified")
    _wrap_async(runner.SagaRunner, "run", "saga.run")
    _wrap_async(runner.SagaRunner, "_update", "saga.record")
    _wrap_sync(notices.OperationNotices, "_heard", "wait.heard")
    _wrap_async(notices.OperationNotices, "wait", "wait.wait")
    if hasattr(notices, "Watch"):  # GET ?wait= waits on a watch taken before its read
        _wrap_async(notices.Watch, "finished", "wait.finished")
    _wrap_sync(Engine, "connect", "byodb.connect")
    for name in ("create_table", "inspect_table", "plan_change"):
        _wrap_sync(byodb_adapter.ByodbAdapter, name, f"byodb.{name}")

    # A hand-over to a BYODB thread: submitted on the loop, started in the thread, back on the loop.
    original_run = byodb_adapter.ByodbAdapter.run

    async def run(self: Any, action: Any, /, *args: Any) -> Any:
        label = getattr(action, "__name__", "action")
        mark(f"hop.submit {label}")

        def in_thread(*a: Any) -> Any:
            mark(f"hop.thread {label} begin")
            try:
                return action(*a)
            finally:
                mark(f"hop.thread {label} end")

        try:
            return await original_run(self, in_thread, *args)
        finally:
            mark(f"hop.back {label}")

    byodb_adapter.ByodbAdapter.run = run  # type: ignore[method-assign]


def main() -> None:
    install()
    from schemasaga.cli import main as cli_main

    sys.argv[0] = "schemasaga"
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
