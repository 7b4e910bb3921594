"""Finished operations heard of as they finish: one ``LISTEN`` connection per process, however many
requests wait (``?wait=``). A trigger on the operations' read model notifies each one that finishes
(migration 0011); a waiter also reads the operation again every ``recheck`` seconds, so a notice missed
while the connection was being made again only delays it. A waiting request holds no core connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

import psycopg

from schemasaga.coredb.views import operation_view
from schemasaga.services.views import OperationView, ReadModels
from schemasaga.services.waiting import FINISHED

log = logging.getLogger(__name__)

CHANNEL = "schemasaga_operation_finished"


class Watch:
    """One waiter's interest in an operation, registered before its first read: whatever finishes the
    operation after that read wakes it (the committed row handed over, a notice, or the recheck)."""

    def __init__(self, notices: OperationNotices, operation_id: UUID) -> None:
        self._notices = notices
        self.operation_id = operation_id
        self._heard = asyncio.Event()
        # The operation's row as committed by the transaction that finished it, in this process.
        self._finished: OperationView | None = None

    def wake(self, finished: OperationView | None = None) -> None:
        if finished is not None and finished.status in FINISHED:
            self._finished = finished
        self._heard.set()

    async def finished(self, *, timeout: float, read_first: bool = True) -> OperationView | None:
        """The operation once it finished, or None when ``timeout`` seconds passed first (or no such
        operation is known). ``read_first=False``: the caller read it after :meth:`OperationNotices.watch`
        and found it unfinished."""
        notices = self._notices
        notices._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The waits are ``asyncio.timeout`` blocks, not ``wait_for``: no task of their own, so a notice
        # wakes this one at once rather than a task that then wakes it (a turn of a loop that the
        # in-process worker keeps busy meanwhile, finishing the job of the operation heard of).
        if not notices._listening.is_set():  # the first wait: the listener being ready, briefly
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout, 0.5)):
                    await notices._listening.wait()
        read = read_first
        while True:
            if read:
                self._heard.clear()
                view = self._finished or await notices._reads.get_operation(self.operation_id)
                if view is not None and view.status in FINISHED:
                    return view
            # Committed here (as a read would now find it): answered without a read.
            if self._finished is not None:
                return self._finished
            read = True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, notices._recheck)):
                    await self._heard.wait()


class OperationNotices:
    """:class:`~schemasaga.services.waiting.OperationWaits` on PostgreSQL's LISTEN/NOTIFY."""

    def __init__(self, conninfo: str, reads: ReadModels, *, recheck: float = 1.0) -> None:
        self._conninfo = conninfo
        self._reads = reads
        self._recheck = recheck
        self._waiters: dict[UUID, set[Watch]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @contextlib.contextmanager
    def watch(self, operation_id: UUID) -> Iterator[Watch]:
        watch = Watch(self, operation_id)
        self._waiters.setdefault(operation_id, set()).add(watch)
        try:
            yield watch
        finally:
            waiting = self._waiters.get(operation_id)
            if waiting is not None:
                waiting.discard(watch)
                if not waiting:
                    del self._waiters[operation_id]

    async def wait(self, operation_id: UUID, *, timeout: float) -> OperationView | None:
        # Registered before the first read: a notice that comes between the read and the wait is kept.
        with self.watch(operation_id) as watch:
            return await watch.finished(timeout=timeout)

    def _start(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="schemasaga-operation-notices")

    async def _listen(self) -> None:
        while True:
            try:
                conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    async for notice in conn.notifies():
                        self._heard(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the core database restarting, say: waiters recheck meanwhile
                log.warning("operation notices: listening failed (%s), again in 1 s", exc)
            self._listening.clear()
            await asyncio.sleep(1.0)

    def committed(self, rows: Sequence[dict[str, Any]]) -> None:
        """The rows of the operations a transaction of this process finished, once committed (as
        ``get_operation`` reads them: the queries that finish an operation return them): their waiters
        answer with them, without reading them again."""
        for row in rows:
            waiting = self._waiters.get(row["operation_id"])
            if waiting:
                view = operation_view(row)
                for watch in waiting:
                    watch.wake(view)

    def _heard(self, payload: str) -> None:
        try:
            operation_id = UUID(payload)
        except ValueError:
            return
        # The notice says the operation finished somewhere: its waiters read it.
        for watch in self._waiters.get(operation_id, ()):
            watch.wake()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
