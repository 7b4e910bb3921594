"""Webhooks: their events, where they may send, how a body is signed and how often a failed delivery is
tried again. Pure: no I/O (``ipaddress`` only reads the host of a URL).

Where a webhook may send: ``SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS``, an allow-list written as the database one
(``SCHEMASAGA_BYODB_ALLOWED_HOSTS``: names, ``*.suffix``, IP addresses and networks). A host that is an IP
address outside the public internet (loopback, private, link-local, reserved...) or a name of the local
network (``localhost``, ``*.localhost``, ``*.local``, ``*.internal``, a name without a dot) is refused
unless an entry of the list names it. With a list, every host must match an entry; without one (the
default), any other host may be used. Names are matched as written, never resolved here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID

from schemasaga.domain.errors import InvalidWebhook, UnknownEventType, WebhookTargetNotAllowed
from schemasaga.domain.policy import HostPattern, parse_allowed_hosts

STREAM_PREFIX = "Webhook$"
ALL_EVENTS = "*"
SIGNATURE_HEADER = "X-Schemasaga-Signature"
MAX_URL_LENGTH = 2000
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 200

_MALFORMED = "the webhook URL is malformed: expected http(s)://host[:port]/path"
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_LOCAL_NAMES = re.compile(r"(^|\.)(localhost|local|internal|localdomain|home\.arpa)$")


def stream_name(webhook_id: UUID) -> str:
    return f"{STREAM_PREFIX}{webhook_id}"


def sign(secret: str, body: bytes) -> str:
    """The value of ``X-Schemasaga-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def check_secret(secret: str) -> None:
    if not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH or _CONTROL.search(secret):
        raise InvalidWebhook(
            f"a webhook secret has {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} visible characters "
            "(leave it out to have one generated)"
        )


def check_events(events: Sequence[str], known: Iterable[str]) -> list[str]:
    """The event types a webhook asked for: ``["*"]`` (every one) or known types, each once."""
    if not events:
        raise InvalidWebhook('a webhook needs its event types: a list of types, or ["*"] for every one')
    if ALL_EVENTS in events:
        if len(events) > 1:
            raise InvalidWebhook('"*" already means every event type: give it alone')
        return [ALL_EVENTS]
    allowed = set(known)
    for event_type in events:
        if event_type not in allowed:
            raise UnknownEventType(f"unknown event type {event_type[:100]!r}")
    return list(dict.fromkeys(events))


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    allowed_hosts: tuple[HostPattern, ...] = ()

    @classmethod
    def build(cls, allowed_hosts: str) -> TargetPolicy:
        return cls(parse_allowed_hosts(allowed_hosts))

    def check(self, url: str) -> str:
        """The URL as it will be called; raises InvalidWebhook when malformed, WebhookTargetNotAllowed
        when its host is not one to send to. Never quotes the URL (it may carry a token in its path)."""
        if len(url) > MAX_URL_LENGTH or _CONTROL.search(url):
            raise InvalidWebhook(
                f"a webhook URL has at most {MAX_URL_LENGTH} characters, none blank or control"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidWebhook(
                "the webhook URL is malformed: expected http(s)://host[:port]/path"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidWebhook("the webhook URL is malformed: expected http(s)://host[:port]/path")
        if parts.username is not None or parts.password is not None:
            raise InvalidWebhook(
                "the webhook URL carries credentials: use the signature (the secret) instead"
            )
        if parts.fragment:
            raise InvalidWebhook("the webhook URL has a fragment (#...), which is never sent")
        if port == 0:
            raise InvalidWebhook("the webhook URL's port is 0")
        host = parts.hostname.rstrip(".")
        listed = any(p.matches(host) for p in self.allowed_hosts)
        if self.allowed_hosts and not listed:
            raise WebhookTargetNotAllowed(
                f"host {host[:100]!r} is not one webhooks may send to (SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS)"
            )
        if not listed and _is_local(host):
            raise WebhookTargetNotAllowed(
                f"host {host[:100]!r} is on a local or private network: webhooks send there only when "
                "SCHEMASAGA_WEBHOOK_ALLOWED_HOSTS names it"
            )
        return url


def _is_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "." not in host or bool(_LOCAL_NAMES.search(host.lower()))
    return not address.is_global


def retry_delays(*, base: float, cap: float, total: float) -> list[float]:
    """The waits between the attempts of a delivery: doubling from ``base`` up to ``cap``, until they add
    up to at least ``total`` seconds."""
    delays: list[float] = []
    wait = base
    while sum(delays) < total:
        delays.append(min(wait, cap))
        wait *= 2
    return delays


@dataclass(frozen=True, slots=True)
class Sent:
    """What a receiver answered: its status, or why there was no answer."""

    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# -- events (stream ``Webhook$<id>``) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    webhook_id: str

    SCHEMA_VERSION: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class WebhookCreated(WebhookEvent):
    """The URL and the secret only encrypted (a URL may hold a token); never the secret in clear."""

    url_encrypted: str
    events: list[str]
    secret_encrypted: str
    key_id: str


@dataclass(frozen=True, slots=True)
class WebhookSecretRotated(WebhookEvent):
    """The same URL and secret, encrypted again with another key (``schemasaga secrets rotate``)."""

    url_encrypted: str
    secret_encrypted: str
    key_id: str
    previous_key_id: str


@dataclass(frozen=True, slots=True)
class WebhookDeleted(WebhookEvent):
    pass


EVENT_TYPES: dict[str, type[WebhookEvent]] = {
    cls.__name__: cls for cls in (WebhookCreated, WebhookSecretRotated, WebhookDeleted)
}
