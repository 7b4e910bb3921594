"""The service's own core database, as a registration must never reach it.

Its identity is read now, on a core connection, with the very queries a registration's probe runs
(:mod:`schemasaga.byodb.identity`), so that the two compare whatever URL, host spelling or role reached
the server: ``127.0.0.1`` and ``localhost``, a Unix socket, a percent-encoded database name.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.identity import PG_NO_CONTROL_FUNCTION, QUERIES, DatabaseIdentity, postgresql_identity


class PgOwnDatabase:
    """:class:`~schemasaga.services.ports.OwnDatabase` on the core pool. ``whole_server``: the embedded
    server, which is the service's alone: no database of it may be registered."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, whole_server: bool) -> None:
        self.pool = pool
        self.whole_server = whole_server

    async def identity(self) -> DatabaseIdentity:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(QUERIES["postgresql.postmaster"].text)
            row = await cur.fetchone()
            assert row is not None
            started, port, database, schema = row
            system_identifier: Any = None
            try:
                async with conn.transaction():  # a savepoint: a refusal leaves the transaction usable
                    found = await (await conn.execute(QUERIES["postgresql.cluster"].text)).fetchone()
                    system_identifier = None if found is None else found[0]
            except psycopg.Error as exc:
                if exc.sqlstate not in PG_NO_CONTROL_FUNCTION:
                    raise
        return postgresql_identity(
            started=started, port=port, database=database, schema=schema, system_identifier=system_identifier
        )
