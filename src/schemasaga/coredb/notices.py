"""Finished operations heard of as they finish: one ``LISTEN`` connection per process, however many
requests wait (``?wait=``). A trigger on the operations' read model notifies each one that finishes
(migration 0011); a waiter also reads the operation again every ``recheck`` seconds, so a notice missed
while the connection was being made again only delays it. A waiting request holds no core connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import psycopg

from schemasaga.services.views import OperationView, ReadModels
from schemasaga.services.waiting import FINISHED

log = logging.getLogger(__name__)

CHANNEL = "schemasaga_operation_finished"


class OperationNotices:
    """:class:`~schemasaga.services.waiting.OperationWaits` on PostgreSQL's LISTEN/NOTIFY."""

    def __init__(self, conninfo: str, reads: ReadModels, *, recheck: float = 1.0) -> None:
        self._conninfo = conninfo
        self._reads = reads
        self._recheck = recheck
        self._waiters: dict[UUID, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def wait(self, operation_id: UUID, *, timeout: float) -> OperationView | None:
        self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        heard = asyncio.Event()
        # Registered before the first read: a notice that comes between the read and the wait is kept.
        self._waiters.setdefault(operation_id, set()).add(heard)
        try:
            # The waits are ``asyncio.timeout`` blocks, not ``wait_for``: no task of their own, so a notice
            # wakes this one at once rather than a task that then wakes it (a turn of a loop that the
            # in-process worker keeps busy meanwhile, finishing the job of the operation heard of).
            if not self._listening.is_set():  # the first wait: the listener being ready, briefly
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(timeout, 0.5)):
                        await self._listening.wait()
            while True:
                heard.clear()
                view = await self._reads.get_operation(operation_id)
                if view is not None and view.status in FINISHED:
                    return view
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self._recheck)):
                        await heard.wait()
        finally:
            waiting = self._waiters.get(operation_id)
            if waiting is not None:
                waiting.discard(heard)
                if not waiting:
                    del self._waiters[operation_id]

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

    def finished(self, operation_id: UUID) -> None:
        """An outcome this process committed: its waiters read it now rather than at the notice."""
        for heard in self._waiters.get(operation_id, ()):
            heard.set()

    def _heard(self, payload: str) -> None:
        try:
            operation_id = UUID(payload)
        except ValueError:
            return
        self.finished(operation_id)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
