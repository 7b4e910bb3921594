"""Sending a webhook delivery over HTTP (httpx): one POST, short timeouts, no redirect followed.

Where the POST goes is decided once, here. The URL is checked again against the current policy
(domain/webhooks.py); a host name is resolved once, and refused when any address it resolves to is
private, loopback or otherwise non-public, unless an entry of the allow-list names the host. The POST
then goes to one of those very addresses: never to whatever a second resolution (httpx's own, at connect
time) would answer. A name that answers a public address to the check and 127.0.0.1 a moment later (DNS
rebinding, a short TTL) cannot turn the service against its own network. The request keeps the name: its
Host header, and for https the TLS server name (SNI) and the certificate's check (httpcore's
``sni_hostname`` request extension). A URL that gives an IP address is sent to as written.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import httpx

from schemasaga.domain.errors import InvalidWebhook, WebhookTargetNotAllowed
from schemasaga.domain.webhooks import Sent, TargetPolicy

MAX_ERROR = 300
# The resolved addresses tried in turn when one cannot be connected to (nothing was sent to it): a
# receiver's IPv6 address first on a worker without IPv6 routes, one server of several down. Bounded,
# because each try may wait for the connect timeout.
MAX_ADDRESSES = 4

Resolve = Callable[[str], Awaitable[Sequence[str]]]
"""A host name (ASCII, IDNA-encoded) -> its addresses, in the order to try them; OSError if none."""


async def resolve_with_loop(host: str) -> list[str]:
    """The event loop's ``getaddrinfo``: the system resolver, in its order (RFC 6724), each address once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HttpSender:
    def __init__(
        self,
        *,
        policy: TargetPolicy,
        timeout: float,
        resolve: Resolve = resolve_with_loop,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        """``transport`` builds the httpx transport of each delivery (tests: a TLS context that trusts
        their own certificate); by default httpx's own."""
        self.policy = policy
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self.resolve = resolve
        self.transport = transport

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Sent:
        try:
            # Again at each delivery: the operator may have narrowed the allow-list since the webhook
            # was made. Its messages never quote the URL.
            self.policy.check(url)
            target = httpx.URL(url)
        except (InvalidWebhook, WebhookTargetNotAllowed) as exc:
            return Sent(None, str(exc)[:MAX_ERROR])
        except httpx.InvalidURL:
            return Sent(None, "the webhook URL is malformed (the HTTP client cannot read it)")
        hidden = _url_forms(url, target)
        addresses = await self._addresses(target)
        if isinstance(addresses, str):
            return Sent(None, addresses)
        async with httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
            transport=None if self.transport is None else self.transport(),
        ) as http:
            response: httpx.Response | None = None
            error = ""
            for address in addresses[:MAX_ADDRESSES]:
                try:
                    request = self._pinned(http, target, address, body=body, headers=headers)
                    hidden.add(str(request.url))
                    response = await http.send(request)
                    break
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    error = _described(exc, hidden)  # nothing was sent: the next address
                except httpx.HTTPError as exc:
                    return Sent(None, _described(exc, hidden))
                except httpx.InvalidURL:
                    return Sent(None, "the host resolves to an address the HTTP client cannot connect to")
        if response is None:
            return Sent(None, error)
        if 300 <= response.status_code < 400:
            return Sent(response.status_code, "redirects are not followed")
        return Sent(response.status_code, None if response.is_success else f"answered {response.status_code}")

    async def _addresses(self, target: httpx.URL) -> list[str] | str:
        """The addresses to connect to, checked; or why there is none. The host is read as httpx reads it
        (what it would connect to), whatever urllib read for the policy's check."""
        host = target.host.rstrip(".").lower()
        names = {host, target.raw_host.decode("ascii").rstrip(".").lower()}  # as written, and IDNA-encoded
        listed = any(p.matches(name) for p in self.policy.allowed_hosts for name in names)
        if self.policy.allowed_hosts and not listed:
            return "the host is not one webhooks may send to (SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS)"
        address = _address(host)
        if address is not None:
            if listed or address.is_global:
                return [host]  # an address: sent to as written
            return "the host is a non-public address (SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS)"
        try:
            addresses = list(await self.resolve(target.raw_host.decode("ascii").rstrip(".")))
        except OSError as exc:
            return f"cannot resolve the host: {exc}"[:MAX_ERROR]
        if not addresses:
            return "cannot resolve the host: no address"
        if not listed:
            for resolved in addresses:
                parsed = _address(resolved)
                if parsed is None or not parsed.is_global:
                    return "the host resolves to a non-public address (SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS)"
        return addresses

    @staticmethod
    def _pinned(
        http: httpx.AsyncClient,
        target: httpx.URL,
        address: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
    ) -> httpx.Request:
        """The POST to ``address``, as it would be to the URL's host: the same Host header, and for https
        the same TLS server name and certificate check (``sni_hostname``)."""
        extensions: dict[str, object] = {}
        if target.scheme == "https" and _address(target.host) is None:
            extensions["sni_hostname"] = target.raw_host.decode("ascii").rstrip(".")
        return http.build_request(
            "POST",
            target.copy_with(host=address),
            content=body,
            headers={**headers, "Host": target.netloc.decode("ascii")},
            extensions=extensions,
        )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None  # a name, or an address with a scope (fe80::1%eth0): never public


def _url_forms(url: str, target: httpx.URL) -> set[str]:
    """The spellings of the URL an httpx error may quote: as given, as httpx writes it, its path."""
    forms = {url, str(target)}
    path = target.raw_path.decode("ascii")
    if path != "/":
        forms.add(path)
    return forms


def _described(exc: Exception, hidden: Iterable[str]) -> str:
    # Never the URL (it may carry a token): the error is listed and logged.
    text = f"{type(exc).__name__}: {exc}"
    for form in sorted(hidden, key=len, reverse=True):
        text = text.replace(form, "<the webhook's URL>")
    return text[:MAX_ERROR]
