"""What the sync and the async client share: defaults, headers, when to try again."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx

from schemasaga.client.calls import Call
from schemasaga.client.errors import SchemasagaError

DEFAULT_URL = "http://127.0.0.1:8000"
# Longer than the longest long-poll (30 s).
DEFAULT_TIMEOUT = 40.0
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)


def client_headers(token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    result = {"Accept": "application/json, application/problem+json"}
    if token is not None:
        result["Authorization"] = f"Bearer {token}"
    result.update(headers or {})
    return result


def request_args(call: Call[Any]) -> dict[str, Any]:
    """The arguments of ``httpx.Client.request`` for ``call``; a change gets its Idempotency-Key here,
    once, so that every retry of it carries the same one."""
    headers = dict(call.headers)
    if call.write:
        headers["Idempotency-Key"] = call.idempotency_key or str(uuid4())
    args: dict[str, Any] = {"method": call.method, "url": call.path, "headers": headers}
    if call.params:
        args["params"] = call.params
    if call.json is not None:
        args["json"] = call.json
    return args


def may_retry(call: Call[Any], problem: BaseException, attempt: int, retries: int) -> bool:
    """Whether to send ``call`` again after ``problem``: a connection that failed or a 503 (nothing was
    written), for reads and for changes (their Idempotency-Key makes a retry safe)."""
    if attempt >= retries:
        return False
    if isinstance(problem, SchemasagaError):
        return problem.retryable
    return isinstance(problem, httpx.TransportError)


def delay(attempt: int) -> float:
    return RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
