"""One database, one name: which registered database, if any, a new registration would reach again.

Two names for one physical database would share its tables: a table created under each name would be
one table, and deleting one would drop the table the other still reports. URLs cannot tell (``localhost``
and ``127.0.0.1``, a symbolic link to a SQLite file), so the servers are asked who they are
(:mod:`schemasaga.byodb.identity`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.adapter import DdlLimits, open_adapter
from schemasaga.byodb.engines import parse_url
from schemasaga.byodb.errors import ByodbError, PermanentByodbError, classify
from schemasaga.byodb.identity import DatabaseIdentity, Match
from schemasaga.databases.projection import Q
from schemasaga.databases.urls import redact
from schemasaga.secrets import SecretBox, SecretsError

log = logging.getLogger(__name__)

# Registered databases whose identity is read at once.
_CONCURRENCY = 4


class RegisteredIdentities:
    def __init__(
        self, *, pool: AsyncConnectionPool[Any], secrets: SecretBox, limits: DdlLimits, timeout: float
    ) -> None:
        self.pool = pool
        self.secrets = secrets
        self.limits = limits
        self.timeout = timeout

    async def find(self, *, engine: str, identity: DatabaseIdentity) -> str | None:
        """The name of the registered database of ``engine`` whose identity is ``identity``, if any.

        A registered database whose stored identity cannot decide (none stored: the configured default,
        registrations older than identities; or one that only a fresh reading compares) is asked now."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(Q["identities"], {"engine": engine})).fetchall()
        to_ask: list[tuple[str, str]] = []
        for name, url_encrypted, stored in rows:
            match identity.against_stored(stored):
                case Match.SAME:
                    return str(name)
                case Match.UNKNOWN:
                    to_ask.append((name, url_encrypted))
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def ask(name: str, url_encrypted: str) -> DatabaseIdentity | None:
            async with gate:
                return await self._read(name, url_encrypted)

        found = await asyncio.gather(*(ask(name, encrypted) for name, encrypted in to_ask))
        for (name, _), theirs in zip(to_ask, found, strict=True):
            if theirs is not None and identity.same_as(theirs):
                return name
        return None

    async def holder(self, stored: str) -> str | None:
        """The registered database whose stored identity is ``stored``."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(Q["holding_identity"], {"identity": stored})).fetchone()
        return None if row is None else str(row[0])

    async def _read(self, name: str, url_encrypted: str) -> DatabaseIdentity | None:
        """The identity of registered database ``name`` read now, or ``None`` if it cannot be.

        A registered database that cannot be reached (or whose URL this process cannot decrypt) is not
        compared: a new registration of that same database is then accepted, and the two names share
        its tables until one is unregistered. Refusing instead would let any database that is down
        block every registration on its engine; the warning says which one was skipped."""
        try:
            url = self.secrets.decrypt(url_encrypted)
        except SecretsError:
            log.warning("database %r not compared with a new registration: its URL cannot be decrypted", name)
            return None
        try:
            return await asyncio.wait_for(asyncio.to_thread(identify, url, self.limits), timeout=self.timeout)
        except TimeoutError:
            reason = f"no answer within {self.timeout:.0f}s"
        except ByodbError as exc:
            reason = redact(str(exc), url)
        log.warning("database %r not compared with a new registration: unreachable (%s)", name, reason)
        return None


def identify(url: str, limits: DdlLimits) -> DatabaseIdentity:
    """The identity of the registered database at ``url`` (blocking)."""
    engine, parsed = parse_url(url)
    if engine == "sqlite" and not Path(parsed.database or "").exists():
        # Connecting would create an empty file in its place.
        raise PermanentByodbError("its SQLite file does not exist", engine=engine)
    try:
        adapter = open_adapter(url, limits=limits)
    except Exception as exc:
        raise classify(exc, context="connect") from None
    try:
        return adapter.identity()
    finally:
        adapter.dispose()
