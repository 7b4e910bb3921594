"""Waiting for an operation's outcome (``?wait=SECONDS``)."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from schemasaga.services.views import OperationView

FINISHED = frozenset({"completed", "rejected"})
MAX_WAIT_SECONDS = 30.0


class OperationWaits(Protocol):
    async def wait(self, operation_id: UUID, *, timeout: float) -> OperationView | None:
        """The operation once it finished (completed or rejected), or None when ``timeout`` seconds
        passed first (or no such operation is known)."""

    async def close(self) -> None: ...
