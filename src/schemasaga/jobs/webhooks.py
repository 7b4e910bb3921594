"""Sending a webhook delivery over HTTP (httpx): one POST, short timeouts, no redirect followed; a host
name that no allow-list entry names is resolved first and refused when it points to a private, loopback
or otherwise non-public address (domain/webhooks.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from schemasaga.domain.webhooks import Sent, TargetPolicy

MAX_ERROR = 300


class HttpSender:
    def __init__(self, *, policy: TargetPolicy, timeout: float) -> None:
        self.policy = policy
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Sent:
        refused = await self._refused(url)
        if refused is not None:
            return Sent(None, refused)
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, trust_env=False
            ) as http:
                response = await http.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            # Never the URL (it may carry a token): the error is listed and logged.
            return Sent(None, f"{type(exc).__name__}: {exc}".replace(url, "<the webhook's URL>")[:MAX_ERROR])
        if 300 <= response.status_code < 400:
            return Sent(response.status_code, "redirects are not followed")
        return Sent(response.status_code, None if response.is_success else f"answered {response.status_code}")

    async def _refused(self, url: str) -> str | None:
        host = (urlsplit(url).hostname or "").rstrip(".")
        try:
            ipaddress.ip_address(host.strip("[]"))
            return None  # an address: checked as written when the webhook was made
        except ValueError:
            pass
        if any(p.matches(host) for p in self.policy.allowed_hosts):
            return None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"cannot resolve the host: {exc}"[:MAX_ERROR]
        for info in infos:
            if not ipaddress.ip_address(info[4][0]).is_global:
                return "the host resolves to a non-public address (SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS)"
        return None
