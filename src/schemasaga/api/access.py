"""Who may reach the service at all, before any route: the ``Host`` allow-list (a page of another site
that rebinds its DNS name to 127.0.0.1 sends its own name as ``Host``, and is refused) and, only when
configured, CORS. Tokens and scopes are checked by the routes' dependencies (``api/deps.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from schemasaga.api.errors import error_response


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """What bootstrap decided from the settings (see :mod:`schemasaga.domain.access`)."""

    tokens_required: bool = False
    # Host header names answered; None: any.
    allowed_hosts: frozenset[str] | None = None
    cors_origins: tuple[str, ...] = ()


def host_name(value: str) -> str:
    """The name of a ``Host`` header, without its port: ``[::1]:8000`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class HostAllowList:
    """400 with the error shape for a request whose ``Host`` is not allowed (or missing)."""

    def __init__(self, app: ASGIApp, *, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        if host is not None and host_name(host) in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = "none" if host is None else repr(host[:100])
        response = error_response(
            400,
            "host_not_allowed",
            f"Host {shown} is not one this service answers to (SCHEMASAGA_ALLOWED_HOSTS)",
            path=str(scope.get("path", "")),
        )
        await response(scope, receive, send)


def install_access(app: FastAPI, policy: AccessPolicy) -> None:
    """Add the middlewares the policy calls for; call before adding the request context's middleware, so
    that a refusal still carries its request id and is counted in the metrics."""
    app.state.tokens_required = policy.tokens_required
    if policy.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(policy.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "X-Actor", "X-Request-Id"],
            expose_headers=["ETag", "Location", "X-Request-Id"],
        )
    if policy.allowed_hosts is not None:
        app.add_middleware(HostAllowList, allowed=policy.allowed_hosts)
