"""The catalog's source: registered databases read from rm_databases and decrypted with this process's key."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from schemasaga.catalog import CatalogEntry
from schemasaga.databases.projection import Q
from schemasaga.secrets import SecretBox, SecretsError

log = logging.getLogger(__name__)


class RegistrySource:
    def __init__(self, *, conninfo: str, pool: AsyncConnectionPool[Any], secrets: SecretBox) -> None:
        self._conninfo = conninfo
        self._pool = pool
        self._secrets = secrets

    def load(self) -> Sequence[CatalogEntry]:
        # Its own short connection: the pool is async and this runs in a worker thread.
        with psycopg.connect(self._conninfo, connect_timeout=5) as conn:
            rows = conn.execute(Q["catalog_entries"]).fetchall()
        return [self._entry(*row) for row in rows]

    async def aload(self) -> Sequence[CatalogEntry]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(Q["catalog_entries"])).fetchall()
        return [self._entry(*row) for row in rows]

    def _entry(self, name: str, engine: str, url_encrypted: str) -> CatalogEntry:
        try:
            url: str | None = self._secrets.decrypt(url_encrypted)
        except SecretsError:
            log.warning("database %r: its stored URL cannot be decrypted with this process's key", name)
            url = None
        return CatalogEntry(name=name, engine=engine, url=url)
