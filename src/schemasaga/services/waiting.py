"""Waiting for an operation's outcome (``?wait=SECONDS``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol
from uuid import UUID

from schemasaga.services.views import OperationView

FINISHED = frozenset({"completed", "rejected"})
MAX_WAIT_SECONDS = 30.0


class Watching(Protocol):
    async def finished(self, *, timeout: float, read_first: bool = True) -> OperationView | None:
        """The operation once it finished, or None when ``timeout`` seconds passed first (or no such
        operation is known); ``read_first=False`` when the caller read it since it began to watch."""


class OperationWaits(Protocol):
    def watch(self, operation_id: UUID) -> AbstractContextManager[Watching]:
        """Watching ``operation_id`` from now on: an outcome committed after this call, and before or
        while the watcher waits, is not missed."""

    async def wait(self, operation_id: UUID, *, timeout: float) -> OperationView | None:
        """The operation once it finished (completed or rejected), or None when ``timeout`` seconds
        passed first (or no such operation is known)."""

    async def close(self) -> None: ...
