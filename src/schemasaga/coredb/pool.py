"""The core database's connection check, run by the pool on every checkout."""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection, OperationalError
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool


async def check_connection(conn: AsyncConnection[Any]) -> None:
    """Raise when ``conn`` no longer works, so that the pool replaces it rather than failing a request.

    psycopg_pool's own check is a round trip on every checkout (an empty query, with autocommit switched
    on and off around it): two of a write request's round trips. An idle connection gets nothing from
    its server unless something happened to it (terminated by a restart or an administrator: an error
    and the end of the stream; a notice or notification): so when its socket has nothing to read, it is
    taken as it is, and when it has something, the round trip of the full check reads it and says."""
    if conn.broken or conn.closed:
        raise OperationalError("the connection is closed")
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, OperationalError):  # no socket any more
        readable = [True]
    if readable:
        await AsyncConnectionPool.check_connection(conn)


@asynccontextmanager
async def autocommit_connection(pool: AsyncConnectionPool[Any]) -> AsyncIterator[AsyncConnection[Any]]:
    """A pool connection in autocommit mode for reads: each statement one round trip, with no BEGIN and
    COMMIT around it (under READ COMMITTED a read sees what was committed when it ran either way). Given
    back in transaction mode; one left busy (a cancelled query) or broken is closed by the pool instead."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            if conn.info.transaction_status == TransactionStatus.IDLE:
                await conn.set_autocommit(False)
