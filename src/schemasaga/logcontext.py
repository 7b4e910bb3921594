"""The ids of the work in hand (the HTTP request, the operation, its correlation), carried by every log
line written meanwhile.

Context variables: each request and each job runs in its own asyncio task, which starts with a copy of
its creator's context, so what one binds never shows in another's lines (``asyncio.to_thread`` carries
the context into the thread). Plain standard library, so any layer may bind them.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("schemasaga_request_id", default=None)
operation_id: ContextVar[str | None] = ContextVar("schemasaga_operation_id", default=None)
correlation_id: ContextVar[str | None] = ContextVar("schemasaga_correlation_id", default=None)


def bind_operation(operation: object, *, correlation: object | None = None) -> None:
    """The operation the current task works on from now (its correlation id: the operation's own unless
    given)."""
    operation_id.set(str(operation))
    correlation_id.set(str(correlation if correlation is not None else operation))


def current() -> dict[str, str]:
    """The ids bound in the current context (those that are set)."""
    ids = {
        "request_id": request_id.get(),
        "operation_id": operation_id.get(),
        "correlation_id": correlation_id.get(),
    }
    return {k: v for k, v in ids.items() if v is not None}
