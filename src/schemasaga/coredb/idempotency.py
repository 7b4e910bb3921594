"""Idempotency keys in the core database (:class:`~schemasaga.services.idempotency.IdempotencyStore`)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from schemasaga.services.idempotency import KEPT_FOR_SECONDS, Claim, StoredAnswer
from schemasaga.sql import queries

Q = queries("idempotency")


async def claim_key(conn: AsyncConnection[Any], claim: Claim, *, operation_id: str | None) -> bool:
    cur = await conn.execute(
        Q["claim_key"],
        {
            "principal": claim.principal,
            "key": claim.key,
            "fingerprint": claim.fingerprint,
            "operation_id": operation_id,
            "ttl": KEPT_FOR_SECONDS,
        },
    )
    return await cur.fetchone() is not None


class PgIdempotency:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def find(self, principal: str, key: str) -> StoredAnswer | None:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["find_key"], {"principal": principal, "key": key})
            row = await cur.fetchone()
        if row is None:
            return None
        return StoredAnswer(
            fingerprint=row["fingerprint"],
            operation_id=row["operation_id"],
            status=row["status"],
            headers=dict(row["headers"] or {}),
            body=bytes(row["body"]) if row["body"] is not None else None,
        )

    async def record_answer(self, claim: Claim, *, status: int, headers: dict[str, str], body: bytes) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                Q["record_answer"],
                {
                    "principal": claim.principal,
                    "key": claim.key,
                    "fingerprint": claim.fingerprint,
                    "status": status,
                    "headers": Jsonb(headers),
                    "body": body,
                    "ttl": KEPT_FOR_SECONDS,
                },
            )

    async def purge_expired(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["purge_expired"])
            return int(cur.rowcount)
