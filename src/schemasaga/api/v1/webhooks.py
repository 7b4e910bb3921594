"""Webhooks (admin tokens limited to no database): create (a generated secret is in this answer only),
list, show, delete, and each one's deliveries."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from schemasaga.api.deps import Admin, Metadata, ServicesDep
from schemasaga.api.errors import problems
from schemasaga.api.idempotency import SECRET_FIELDS, IdempotentAdmin
from schemasaga.api.models import (
    DeliveryList,
    DeliveryOut,
    NewWebhookOut,
    NewWebhookRequest,
    OkOut,
    WebhookList,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=problems(401, 403))


@router.post(
    "",
    status_code=201,
    response_model=NewWebhookOut,
    responses=problems(400, 422, 503),
)
async def create_webhook(
    body: NewWebhookRequest,
    _: IdempotentAdmin,
    services: ServicesDep,
    meta: Metadata,
    request: Request,
    response: Response,
) -> NewWebhookOut:
    """Deliver the events of these types (or ``*``) appended from now on to the URL, signed."""
    setattr(request.state, SECRET_FIELDS, ("secret",))
    created = await services.webhooks.create(
        url=body.url, events=body.events, secret=body.secret, metadata=meta
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/v1/webhooks/{created.webhook.webhook_id}"
    return NewWebhookOut(
        **WebhookOut.model_validate(created.webhook).model_dump(),
        secret=None if body.secret is not None else created.secret,
    )


@router.get("", response_model=WebhookList, responses=problems(503))
async def list_webhooks(_: Admin, services: ServicesDep) -> WebhookList:
    return WebhookList(items=[WebhookOut.model_validate(w) for w in await services.webhooks.list_webhooks()])


@router.get("/{webhook_id}", response_model=WebhookOut, responses=problems(404, 422, 503))
async def get_webhook(webhook_id: UUID, _: Admin, services: ServicesDep) -> WebhookOut:
    return WebhookOut.model_validate(await services.webhooks.get(webhook_id))


@router.delete("/{webhook_id}", response_model=OkOut, responses=problems(400, 404, 422, 503))
async def delete_webhook(
    webhook_id: UUID, _: IdempotentAdmin, services: ServicesDep, meta: Metadata
) -> OkOut:
    """Stop delivering: the deliveries not made yet are cancelled."""
    await services.webhooks.delete(webhook_id, metadata=meta)
    return OkOut()


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList, responses=problems(404, 422, 503))
async def list_deliveries(
    webhook_id: UUID,
    _: Admin,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    """The newest first: attempts, the last answer's status code or error, when the next attempt is due."""
    deliveries = await services.webhooks.deliveries(webhook_id, limit=limit)
    return DeliveryList(items=[DeliveryOut.model_validate(d) for d in deliveries])
