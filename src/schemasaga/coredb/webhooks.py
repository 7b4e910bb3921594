"""Webhooks in the core database (:class:`~schemasaga.services.webhooks.WebhookStore`): each change of a
webhook with its event in one transaction; deliveries queued with their jobs in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb.feed import PgFeed
from schemasaga.domain.webhooks import (
    ALL_EVENTS,
    Sent,
    WebhookCreated,
    WebhookDeleted,
    WebhookSecretRotated,
    stream_name,
)
from schemasaga.eventstore import ANY, NO_STREAM, EventStore, RecordedEvent
from schemasaga.jobs.app import JobScheduler
from schemasaga.secrets import SecretBox
from schemasaga.services.feed import FeedFilter
from schemasaga.services.repository import new_events
from schemasaga.services.webhooks import DeliveryView, PendingDelivery, StoredWebhook
from schemasaga.sql import queries

Q = queries("webhooks")
# Events queued per webhook and transaction: a long backlog is queued over several.
DISPATCH_BATCH = 500
MAX_ERROR = 500


class PgWebhooks:
    def __init__(
        self, pool: AsyncConnectionPool[Any], *, store: EventStore, feed: PgFeed, scheduler: JobScheduler
    ) -> None:
        self.pool = pool
        self.store = store
        self.feed = feed
        self.scheduler = scheduler

    async def create(
        self, *, event: WebhookCreated, webhook_id: UUID, metadata: Mapping[str, Any]
    ) -> datetime:
        async with self.pool.connection() as conn, conn.transaction():
            (recorded,) = await self.store.append(
                stream_name(webhook_id), new_events([event], metadata), expected_version=NO_STREAM, conn=conn
            )
            cur = await conn.execute(
                Q["insert_webhook"],
                {
                    "webhook_id": webhook_id,
                    "url_encrypted": event.url_encrypted,
                    "events": event.events,
                    "secret_encrypted": event.secret_encrypted,
                    "key_id": event.key_id,
                    # The events after its own creation.
                    "dispatched_to": recorded.position,
                },
            )
            row = await cur.fetchone()
            assert row is not None
            created_at: datetime = row[0]
            return created_at

    async def delete(self, *, event: WebhookDeleted, webhook_id: UUID, metadata: Mapping[str, Any]) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(Q["delete_webhook"], {"webhook_id": webhook_id})
            if await cur.fetchone() is None:
                return False
            await conn.execute(Q["cancel_deliveries"], {"webhook_id": webhook_id})
            await self.store.append(
                stream_name(webhook_id), new_events([event], metadata), expected_version=ANY, conn=conn
            )
            return True

    async def list_webhooks(self) -> list[StoredWebhook]:
        return [_stored(r) for r in await self._rows("list_webhooks", {})]

    async def get(self, webhook_id: UUID) -> StoredWebhook | None:
        rows = await self._rows("get_webhook", {"webhook_id": webhook_id})
        return _stored(rows[0]) if rows else None

    async def known(self, webhook_id: UUID) -> bool:
        return bool(await self._rows("webhook_exists", {"webhook_id": webhook_id}))

    async def deliveries(self, webhook_id: UUID, *, limit: int) -> list[DeliveryView]:
        rows = await self._rows("deliveries", {"webhook_id": webhook_id, "limit": limit})
        return [DeliveryView(**r) for r in rows]

    async def any_live(self) -> bool:
        return bool(await self._rows("any_live", {}))

    async def dispatch(self, *, settled: int) -> int:
        queued = 0
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["to_dispatch"], {"settled": settled})
            for webhook in await cur.fetchall():
                webhook_id: UUID = webhook["webhook_id"]
                events = webhook["events"]
                wanted = FeedFilter(event_types=None if ALL_EVENTS in events else tuple(events))
                batch = await self.feed.read_on(
                    conn, wanted, after=webhook["dispatched_to"], to=settled, limit=DISPATCH_BATCH
                )
                for event in batch:
                    inserted = await conn.execute(
                        Q["insert_delivery"],
                        {
                            "webhook_id": webhook_id,
                            "position": event.position,
                            "event_id": event.event_id,
                            "event_type": event.event_type,
                            "stream": event.stream,
                        },
                    )
                    if await inserted.fetchone() is not None:
                        await self.scheduler.deliver_webhook(
                            conn=conn, webhook_id=webhook_id, position=event.position, stream=event.stream
                        )
                        queued += 1
                reached = settled if len(batch) < DISPATCH_BATCH else batch[-1].position
                await conn.execute(Q["advance"], {"webhook_id": webhook_id, "position": reached})
        return queued

    async def pending(self, webhook_id: UUID, position: int) -> PendingDelivery | None:
        rows = await self._rows("for_delivery", {"webhook_id": webhook_id, "position": position})
        if not rows:
            return None
        r = rows[0]
        return PendingDelivery(
            status=r["status"],
            attempts=r["attempts"],
            url_encrypted=r["url_encrypted"],
            secret_encrypted=r["secret_encrypted"],
            deleted=r["deleted_at"] is not None,
        )

    async def event_at(self, position: int) -> RecordedEvent | None:
        events = await self.feed.read(FeedFilter(), after=position - 1, to=position, limit=1)
        return events[0] if events else None

    async def record_attempt(
        self, webhook_id: UUID, position: int, *, status: str, sent: Sent, next_attempt_at: datetime | None
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                Q["record_attempt"],
                {
                    "webhook_id": webhook_id,
                    "position": position,
                    "status": status,
                    "status_code": sent.status_code,
                    "error": None if sent.error is None else sent.error[:MAX_ERROR],
                    "next_attempt_at": next_attempt_at,
                },
            )

    async def rotate(self, new: SecretBox, *, metadata: Mapping[str, Any]) -> list[UUID]:
        rotated: list[UUID] = []
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q["lock_live_webhooks"])
            for w in await cur.fetchall():
                if (
                    w["key_id"] == new.key_id
                    and new.can_decrypt(w["url_encrypted"])
                    and new.can_decrypt(w["secret_encrypted"])
                ):
                    continue
                event = WebhookSecretRotated(
                    webhook_id=str(w["webhook_id"]),
                    url_encrypted=new.encrypt(new.decrypt(w["url_encrypted"])),
                    secret_encrypted=new.encrypt(new.decrypt(w["secret_encrypted"])),
                    key_id=new.key_id,
                    previous_key_id=w["key_id"],
                )
                await conn.execute(
                    Q["rotate_webhook"],
                    {
                        "webhook_id": w["webhook_id"],
                        "url_encrypted": event.url_encrypted,
                        "secret_encrypted": event.secret_encrypted,
                        "key_id": event.key_id,
                    },
                )
                await self.store.append(
                    stream_name(w["webhook_id"]),
                    new_events([event], metadata),
                    expected_version=ANY,
                    conn=conn,
                )
                rotated.append(w["webhook_id"])
        return rotated

    async def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q[query], params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows


def _stored(row: dict[str, Any]) -> StoredWebhook:
    return StoredWebhook(
        webhook_id=row["webhook_id"],
        url_encrypted=row["url_encrypted"],
        events=list(row["events"]),
        created_at=row["created_at"],
    )
