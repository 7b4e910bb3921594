"""The core pool's checkout check: no round trip for a connection with nothing to read, and a connection
its server ended is still found out and replaced instead of failing a request."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from schemasaga.coredb.pool import check_connection


async def test_a_connection_its_server_terminated_is_refused_and_a_healthy_one_kept(
    empty_pg_db: str, pg_server: str
) -> None:
    async with await psycopg.AsyncConnection.connect(empty_pg_db) as conn:
        pid = conn.info.backend_pid
        await check_connection(conn)  # idle and healthy: taken as it is
        assert not conn.broken
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.sleep(0.2)  # the server's error and the end of the stream reach the socket
        with pytest.raises(psycopg.OperationalError):
            await check_connection(conn)


async def test_the_pool_replaces_a_terminated_connection_rather_than_failing_the_request(
    empty_pg_db: str, pg_server: str
) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        empty_pg_db, min_size=1, max_size=1, open=False, check=check_connection
    )
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            first = conn.info.backend_pid
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        await asyncio.sleep(0.2)
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None and row[0] != first
    finally:
        await pool.close()
