"""Webhooks: registering them (admin), queueing each event of the log as a delivery to each webhook that
wants it, and delivering.

- **Dispatch** follows the log as the live feed does (services/feed.py: only settled positions, so none is
  skipped); in one core transaction it queues each new event a webhook wants as a delivery row and its
  job, and moves the webhook's ``dispatched_to``. Every worker runs it; a webhook being dispatched by one
  is skipped by the others (row lock), and a delivery is queued once (its key is webhook and position).
- **Delivery** is a job per event and webhook: the event as the API shows it, as JSON, signed with the
  webhook's secret (``X-Schemasaga-Signature: sha256=<hex HMAC-SHA256 of the body>``). Any answer but a 2xx
  is a failure, and the job runs again after a growing wait (``retry_delays``) until its time is up, then the
  delivery is ``failed``. Jobs of one webhook and one stream (a table's) hold one lock and run in the order
  they were queued, a retried one first: a later event of a table never arrives before an earlier one.
- Deliveries are at least once: a worker killed after the receiver answered and before the answer was
  recorded sends it again. Receivers drop a repeated ``X-Schemasaga-Event-Id``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as random_secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

from schemasaga.domain.errors import WebhookNotFound
from schemasaga.domain.webhooks import (
    SIGNATURE_HEADER,
    Sent,
    TargetPolicy,
    WebhookCreated,
    WebhookDeleted,
    check_events,
    check_secret,
    sign,
)
from schemasaga.eventstore import RecordedEvent
from schemasaga.secrets import SecretBox
from schemasaga.services.feed import KNOWN_EVENT_TYPES, FeedSource, Watermark

log = logging.getLogger(__name__)

MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    webhook_id: UUID
    url_encrypted: str
    events: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookView:
    webhook_id: UUID
    url: str
    events: list[str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    """A new webhook and its secret, shown this once."""

    webhook: WebhookView
    secret: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    position: int
    event_id: UUID
    event_type: str
    stream: str | None
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    status: str
    attempts: int
    url_encrypted: str
    secret_encrypted: str
    deleted: bool


class WebhookStore(Protocol):
    async def create(
        self, *, event: WebhookCreated, webhook_id: UUID, metadata: Mapping[str, Any]
    ) -> datetime:
        """The row and its event in one transaction; the webhook receives the events after its own."""

    async def delete(self, *, event: WebhookDeleted, webhook_id: UUID, metadata: Mapping[str, Any]) -> bool:
        """False when there is no such live webhook; its pending deliveries are cancelled."""

    async def list_webhooks(self) -> list[StoredWebhook]: ...

    async def get(self, webhook_id: UUID) -> StoredWebhook | None: ...

    async def known(self, webhook_id: UUID) -> bool:
        """Whether the webhook exists or existed (its deliveries stay listed once it is deleted)."""

    async def deliveries(self, webhook_id: UUID, *, limit: int) -> list[DeliveryView]: ...

    async def any_live(self) -> bool:
        """Whether some webhook is live (else the dispatcher has nothing to read)."""

    async def dispatch(self, *, settled: int) -> int:
        """Queue the deliveries of the events up to ``settled`` (a settled position); how many."""

    async def pending(self, webhook_id: UUID, position: int) -> PendingDelivery | None: ...

    async def event_at(self, position: int) -> RecordedEvent | None: ...

    async def record_attempt(
        self,
        webhook_id: UUID,
        position: int,
        *,
        status: str,
        sent: Sent,
        next_attempt_at: datetime | None,
    ) -> None: ...

    async def rotate(self, new: SecretBox, *, metadata: Mapping[str, Any]) -> list[UUID]:
        """Encrypt every live webhook's URL and secret not yet under ``new``'s first key with it, each
        with a ``WebhookSecretRotated`` event, in one transaction."""


class WebhookSender(Protocol):
    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Sent:
        """POST once, without following redirects; never raises for the receiver's failures."""


class WebhookCommands:
    """What the API asks of webhooks."""

    def __init__(self, *, store: WebhookStore, secrets: SecretBox, policy: TargetPolicy) -> None:
        self.store = store
        self.secrets = secrets
        self.policy = policy

    async def create(
        self, *, url: str, events: Sequence[str], secret: str | None, metadata: Mapping[str, Any]
    ) -> CreatedWebhook:
        """Check everything first (nothing is written on a refusal); the secret is generated when not
        given."""
        target = self.policy.check(url)
        wanted = check_events(events, KNOWN_EVENT_TYPES)
        if secret is None:
            secret = "whsec_" + random_secrets.token_urlsafe(32)
        check_secret(secret)
        webhook_id = uuid4()
        event = WebhookCreated(
            webhook_id=str(webhook_id),
            url_encrypted=self.secrets.encrypt(target),
            events=wanted,
            secret_encrypted=self.secrets.encrypt(secret),
            key_id=self.secrets.key_id,
        )
        created_at = await self.store.create(event=event, webhook_id=webhook_id, metadata=metadata)
        return CreatedWebhook(WebhookView(webhook_id, target, wanted, created_at), secret)

    async def delete(self, webhook_id: UUID, *, metadata: Mapping[str, Any]) -> None:
        event = WebhookDeleted(webhook_id=str(webhook_id))
        if not await self.store.delete(event=event, webhook_id=webhook_id, metadata=metadata):
            raise WebhookNotFound(f"no webhook with id {webhook_id}")

    async def list_webhooks(self) -> list[WebhookView]:
        return [self._view(w) for w in await self.store.list_webhooks()]

    async def get(self, webhook_id: UUID) -> WebhookView:
        stored = await self.store.get(webhook_id)
        if stored is None:
            raise WebhookNotFound(f"no webhook with id {webhook_id}")
        return self._view(stored)

    async def deliveries(self, webhook_id: UUID, *, limit: int) -> list[DeliveryView]:
        """The newest deliveries first (a deleted webhook's too)."""
        if not await self.store.known(webhook_id):
            raise WebhookNotFound(f"no webhook with id {webhook_id}")
        return await self.store.deliveries(webhook_id, limit=limit)

    async def rotate(self, new: SecretBox, *, metadata: Mapping[str, Any]) -> list[UUID]:
        rotated = await self.store.rotate(new, metadata=metadata)
        self.secrets = new
        return rotated

    def _view(self, stored: StoredWebhook) -> WebhookView:
        return WebhookView(
            stored.webhook_id, self.secrets.decrypt(stored.url_encrypted), stored.events, stored.created_at
        )


class WebhookDispatcher:
    """Queues deliveries as the log grows (one per worker process; see the module's docstring)."""

    def __init__(self, *, feed: FeedSource, store: WebhookStore) -> None:
        self.feed = feed
        self.store = store
        self._stopped = False

    def stop(self) -> None:
        """End ``run`` at its next round. (Cancelling it is not always enough: a query cancelled on the way
        may come back as an error, which the loop survives by design.)"""
        self._stopped = True

    async def run(self, *, every: float = 0.5) -> None:
        """A round every ``every`` seconds, not on each append's notice: deliveries may wait that long,
        and a busy log costs each worker two reads per round, none while no webhook is live."""
        watermark = Watermark()
        self._stopped = False
        while not self._stopped:
            try:
                if await self.store.any_live():
                    high, running = await self.feed.positions()
                    settled = watermark.observe(high=high, running=running)
                    while await self.store.dispatch(settled=settled):
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the core database restarting, say: again at the next round
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # psycopg answers a cancelled query with QueryCanceled: the cancellation is ours.
                    raise asyncio.CancelledError from exc
                log.warning("webhook dispatch failed (%s); again in %.1fs", exc, every)
            await asyncio.sleep(every)


class WebhookDeliverer:
    """One attempt of one delivery (the job's body)."""

    def __init__(
        self,
        *,
        store: WebhookStore,
        sender: WebhookSender,
        commands: WebhookCommands,
        render: Callable[[RecordedEvent], bytes],
        delays: Sequence[float],
    ) -> None:
        self.store = store
        self.sender = sender
        self.commands = commands
        self.render = render
        self.delays = list(delays)

    async def deliver(self, webhook_id: UUID, position: int) -> float | None:
        """Send the delivery once; the seconds to wait before the next attempt when it failed and may be
        tried again, None when it is done (delivered, failed for good, cancelled, or done already)."""
        pending = await self.store.pending(webhook_id, position)
        if pending is None or pending.status != "pending" or pending.deleted:
            return None
        event = await self.store.event_at(position)
        if event is None:  # cannot be: events are never deleted
            raise RuntimeError(f"no event at position {position}")
        box = self.commands.secrets
        body = self.render(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "schemasaga-webhooks",
            SIGNATURE_HEADER: sign(box.decrypt(pending.secret_encrypted), body),
            "X-Schemasaga-Event-Id": str(event.event_id),
            "X-Schemasaga-Event-Type": event.event_type,
            "X-Schemasaga-Position": str(position),
            "X-Schemasaga-Webhook-Id": str(webhook_id),
        }
        sent = await self.sender.post(box.decrypt(pending.url_encrypted), body=body, headers=headers)
        if sent.ok:
            await self.store.record_attempt(
                webhook_id, position, status="delivered", sent=sent, next_attempt_at=None
            )
            return None
        if pending.attempts >= len(self.delays):
            log.warning(
                "webhook %s: delivery of position %d failed for good (%s)", webhook_id, position, _why(sent)
            )
            await self.store.record_attempt(
                webhook_id, position, status="failed", sent=sent, next_attempt_at=None
            )
            return None
        wait = self.delays[pending.attempts]
        log.info(
            "webhook %s: delivery of position %d failed (%s); again in %.1fs",
            webhook_id,
            position,
            _why(sent),
            wait,
        )
        await self.store.record_attempt(
            webhook_id,
            position,
            status="pending",
            sent=sent,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=wait),
        )
        return wait


def _why(sent: Sent) -> str:
    return f"status {sent.status_code}" if sent.status_code is not None else (sent.error or "no answer")
