"""API tokens: create (the token is shown once), list, revoke, and tell who a token is.

A token reads ``ssg_<lookup_id>_<secret>``: 8 random bytes in hex that find its row, then 32 random
bytes. Only its SHA-256 is stored; a presented token is found by its lookup id and its digest compared
in constant time. Creation and revocation are events (stream ``Token$<name>``), written in the
transaction that writes the token's row.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from schemasaga.domain.access import (
    TOKEN_PREFIX,
    Caller,
    Scope,
    TokenCreated,
    TokenRevoked,
    parse_scope,
    validate_token_name,
)
from schemasaga.domain.database import validate_name
from schemasaga.domain.errors import TokenExists, TokenNotFound

_LOOKUP_BYTES = 8
_SECRET_BYTES = 32
_SHAPE = re.compile(rf"^{TOKEN_PREFIX}([0-9a-f]{{{2 * _LOOKUP_BYTES}}})_[A-Za-z0-9_-]{{40,60}}$")


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as listed: never its secret."""

    name: str
    scope: Scope
    databases: list[str] | None
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredToken:
    name: str
    secret_hash: str = field(repr=False)
    scope: Scope
    databases: list[str] | None


@dataclass(frozen=True, slots=True)
class NewToken:
    view: TokenView
    token: str = field(repr=False)  # shown once, to whoever created it


class TokenStore(Protocol):
    """Where tokens are kept (the core database); each write appends its event in the same transaction."""

    async def create(
        self, *, event: TokenCreated, secret_hash: str, metadata: Mapping[str, Any]
    ) -> datetime | None:
        """Store the token and append ``event``; None (nothing written) when the name is taken."""

    async def revoke(self, *, event: TokenRevoked, metadata: Mapping[str, Any]) -> bool:
        """Revoke the token and append ``event``; False (nothing written) when there is no live token of
        that name."""

    async def find(self, lookup_id: str) -> StoredToken | None:
        """The live (not revoked) token with this lookup id."""

    async def list_tokens(self, *, after: str | None = None, limit: int | None = None) -> list[TokenView]:
        """By name, keyset-paged: the tokens named after ``after``, at most ``limit`` (all when None)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCommands:
    def __init__(self, *, store: TokenStore) -> None:
        self.store = store

    async def create(
        self, *, name: str, scope: str, databases: Sequence[str] | None, metadata: Mapping[str, Any]
    ) -> NewToken:
        validate_token_name(name)
        parsed = parse_scope(scope)
        limited = None
        if databases:
            for database in databases:
                validate_name(database, allow_default=True)
            limited = sorted(set(databases))
        lookup_id = secrets.token_hex(_LOOKUP_BYTES)
        token = f"{TOKEN_PREFIX}{lookup_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        event = TokenCreated(name=name, scope=parsed.value, databases=limited, lookup_id=lookup_id)
        created_at = await self.store.create(event=event, secret_hash=digest(token), metadata=metadata)
        if created_at is None:
            raise TokenExists(f"a token named {name!r} exists already (a revoked one keeps its name)")
        return NewToken(TokenView(name=name, scope=parsed, databases=limited, created_at=created_at), token)

    async def revoke(self, *, name: str, metadata: Mapping[str, Any]) -> None:
        validate_token_name(name)
        if not await self.store.revoke(event=TokenRevoked(name=name), metadata=metadata):
            raise TokenNotFound(f"no live token named {name!r}")

    async def list_tokens(self, *, after: str | None = None, limit: int | None = None) -> list[TokenView]:
        return await self.store.list_tokens(after=after, limit=limit)

    async def authenticate(self, token: str) -> Caller | None:
        """Who ``token`` is; None when it is malformed, unknown or revoked."""
        match = _SHAPE.fullmatch(token)
        if match is None:
            return None
        stored = await self.store.find(match.group(1))
        if stored is None or not hmac.compare_digest(digest(token), stored.secret_hash):
            return None
        databases = None if stored.databases is None else frozenset(stored.databases)
        return Caller(name=stored.name, scope=stored.scope, databases=databases)
