"""API tokens in the core database (:class:`~schemasaga.services.tokens.TokenStore`): the row and its
event in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.domain.access import Scope, TokenCreated, TokenRevoked, token_stream
from schemasaga.eventstore import ANY, NO_STREAM, EventStore
from schemasaga.services.repository import new_events
from schemasaga.services.tokens import StoredToken, TokenView
from schemasaga.sql import queries

Q = queries("tokens")


class PgTokens:
    def __init__(self, pool: AsyncConnectionPool[Any], *, store: EventStore) -> None:
        self.pool = pool
        self.store = store

    async def create(
        self, *, event: TokenCreated, secret_hash: str, metadata: Mapping[str, Any]
    ) -> datetime | None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                Q["insert_token"],
                {
                    "name": event.name,
                    "lookup_id": event.lookup_id,
                    "secret_hash": secret_hash,
                    "scope": event.scope,
                    "databases": event.databases,
                },
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await self.store.append(
                token_stream(event.name), new_events([event], metadata), expected_version=NO_STREAM, conn=conn
            )
            created_at: datetime = row[0]
            return created_at

    async def revoke(self, *, event: TokenRevoked, metadata: Mapping[str, Any]) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(Q["revoke_token"], {"name": event.name})
            if await cur.fetchone() is None:
                return False
            await self.store.append(
                token_stream(event.name), new_events([event], metadata), expected_version=ANY, conn=conn
            )
            return True

    async def find(self, lookup_id: str) -> StoredToken | None:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["find_token"], {"lookup_id": lookup_id})
            row = await cur.fetchone()
        if row is None:
            return None
        return StoredToken(
            name=row["name"],
            secret_hash=row["secret_hash"],
            scope=Scope(row["scope"]),
            databases=row["databases"],
        )

    async def list_tokens(self, *, after: str | None = None, limit: int | None = None) -> list[TokenView]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["list_tokens"], {"after": after, "limit": limit})
            rows = await cur.fetchall()
        return [
            TokenView(
                name=r["name"],
                scope=Scope(r["scope"]),
                databases=r["databases"],
                created_at=r["created_at"],
                revoked_at=r["revoked_at"],
            )
            for r in rows
        ]
