"""API tokens (admin tokens limited to no database only): create (the token is in this answer only),
list (never a secret), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from schemasaga.api.deps import Admin, Metadata, Tokens
from schemasaga.api.errors import problems
from schemasaga.api.idempotency import SECRET_FIELDS, IdempotentAdmin
from schemasaga.api.models import NewTokenOut, NewTokenRequest, OkOut, TokenList, TokenOut
from schemasaga.api.paging import Limit, link_next, next_after

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=problems(401, 403))


@router.post(
    "",
    status_code=201,
    response_model=NewTokenOut,
    responses=problems(400, 409, 422, 503),
)
async def create_token(
    body: NewTokenRequest,
    _: IdempotentAdmin,
    tokens: Tokens,
    meta: Metadata,
    request: Request,
    response: Response,
) -> NewTokenOut:
    """Create a token; the answer holds it, and no later answer will."""
    # A retry with the same Idempotency-Key answers the same token's record, without its secret.
    setattr(request.state, SECRET_FIELDS, ("token",))
    created = await tokens.create(name=body.name, scope=body.scope, databases=body.databases, metadata=meta)
    response.headers["Cache-Control"] = "no-store"
    return NewTokenOut(**TokenOut.of(created.view).model_dump(), token=created.token)


@router.get("", response_model=TokenList, responses=problems(400, 422, 503))
async def list_tokens(
    _: Admin,
    tokens: Tokens,
    request: Request,
    response: Response,
    after: Annotated[str | None, Query(description="keyset cursor: the last name of the previous page")] = (
        None
    ),
    limit: Limit = 100,
) -> TokenList:
    """By name, revoked ones included, a page at a time (`next_after`, and the `Link` header)."""
    views = await tokens.list_tokens(after=after, limit=limit)
    after_next = next_after(len(views), limit, views[-1].name if views else None)
    link_next(request, response, after_next)
    return TokenList(items=[TokenOut.of(t) for t in views], next_after=after_next)


@router.delete("/{name}", response_model=OkOut, responses=problems(400, 404, 409, 422, 503))
async def revoke_token(name: str, _: IdempotentAdmin, tokens: Tokens, meta: Metadata) -> OkOut:
    """Revoke the token: from now on it is answered 401."""
    await tokens.revoke(name=name, metadata=meta)
    return OkOut()
