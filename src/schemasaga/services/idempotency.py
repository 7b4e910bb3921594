"""Idempotent requests (``Idempotency-Key``): what the web layer and the unit of work share.

The web layer looks the key up before it runs a request and records the answer after; the unit of work
claims the key in the transaction that appends the request's events, so a retry that comes while the
first request is still being answered (a concurrent one) waits for that transaction and then finds the
key taken: one request with one key makes one operation, whatever the timing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

KEPT_FOR_SECONDS = 24 * 3600


@dataclass(eq=False)
class Claim:
    """The key of the request in hand, not found when it was looked up."""

    principal: str
    key: str
    fingerprint: str
    # Set once a unit of work of the request committed its row: a later one of the same request (a
    # command may run several) does not claim it again.
    recorded: bool = field(default=False)


current: ContextVar[Claim | None] = ContextVar("schemasaga_idempotency_claim", default=None)
"""The claim of the request the current task answers (bound by the web layer)."""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    fingerprint: str
    operation_id: UUID | None
    # None while the request that holds the key is being answered.
    status: int | None
    headers: dict[str, str]
    body: bytes | None


class IdempotencyStore(Protocol):
    async def find(self, principal: str, key: str) -> StoredAnswer | None:
        """The live (unexpired) row of the key."""

    async def record_answer(self, claim: Claim, *, status: int, headers: dict[str, str], body: bytes) -> None:
        """Store the answer of the request that holds the key (taking the key if no unit of work did)."""

    async def purge_expired(self) -> int:
        """Delete the expired rows; answers how many."""
