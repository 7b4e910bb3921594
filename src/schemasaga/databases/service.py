"""The database registry: register, check, unregister, the configured default, and key rotation.

Each command is one core transaction that appends to the database's stream (``Database$<name>``) and
updates rm_databases; the catalog of this process learns of it right after the commit, the catalogs of
other processes at their next reload (or at once when they are asked for the name).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.adapter import ByodbAdapter, DdlLimits, open_adapter
from schemasaga.byodb.errors import ByodbError, classify
from schemasaga.byodb.identity import DatabaseIdentity
from schemasaga.catalog import DEFAULT_DATABASE, DatabaseCatalog, DatabaseNotFound
from schemasaga.databases.duplicates import RegisteredIdentities
from schemasaga.databases.errors import (
    BadCredentials,
    DatabaseAlreadyRegistered,
    DatabaseConfigured,
    DatabaseExists,
    DatabaseInUse,
    DatabaseUnreachable,
)
from schemasaga.databases.events import (
    STATUS_AVAILABLE,
    STATUS_UNREACHABLE,
    DatabaseCredentialsRotated,
    DatabaseEvent,
    DatabaseRegistered,
    DatabaseState,
    DatabaseStatusChanged,
    DatabaseUnregistered,
    DatabaseUrlChanged,
    stream_name,
)
from schemasaga.databases.policy import RegistrationPolicy
from schemasaga.databases.projection import Q, fold, project
from schemasaga.databases.urls import parse_database_url, redact, validate_name
from schemasaga.eventstore import EventStore, NewEvent, WrongExpectedVersion
from schemasaga.secrets import SecretBox, SecretsError

log = logging.getLogger(__name__)

# Error codes that mean "the server answered, and refused these credentials".
_MYSQL_AUTH_CODES = frozenset({"1044", "1045", "1698"})
_PG_AUTH_WORDS = ("authentication failed", "password", "no pg_hba.conf entry", "permission denied")
_CONFLICT_RETRIES = 5
_IDENTITY_INDEX = "rm_databases_identity_idx"


class DatabaseService:
    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[Any],
        store: EventStore,
        catalog: DatabaseCatalog,
        secrets: SecretBox,
        limits: DdlLimits,
        policy: RegistrationPolicy,
    ) -> None:
        self.policy = policy
        self.pool = pool
        self.store = store
        self.catalog = catalog
        self.secrets = secrets
        self.limits = limits

    # -- commands --------------------------------------------------------------------------------

    async def register(self, *, name: str, url: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """Register ``url`` as ``name`` once a connection to it works; nothing is written otherwise."""
        validate_name(name)
        parsed = parse_database_url(url)
        self.policy.check(
            engine=parsed.engine, host=parsed.display["host"], sqlite_path=parsed.display["database"]
        )
        if (await self.load(name)).registered:
            raise DatabaseExists(f"a database named {name!r} is registered already")
        server_version, identity = await self._probe(name, url, parsed.engine, parsed.display)
        existing = await self._identities.find(engine=parsed.engine, identity=identity)
        if existing is not None:
            raise _already_registered(name, existing)
        event = DatabaseRegistered(
            name=name,
            engine=parsed.engine,
            display=parsed.display,
            url_encrypted=self.secrets.encrypt(url),
            key_id=self.secrets.key_id,
            source="api",
            server_version=server_version,
            identity=identity.stored,
        )
        try:
            async with self.pool.connection() as conn, conn.transaction():
                state = await self.load(name, conn=conn)
                if state.registered:
                    raise DatabaseExists(f"a database named {name!r} is registered already")
                await self._commit(conn, state, [event], metadata)
        except WrongExpectedVersion:
            raise DatabaseExists(f"a database named {name!r} was registered concurrently") from None
        except UniqueViolation as exc:
            # Registered concurrently under another name: the read model's unique identity decides.
            if exc.diag.constraint_name != _IDENTITY_INDEX or event.identity is None:
                raise
            raise _already_registered(name, await self._identities.holder(event.identity)) from None
        self.catalog.register(name, url)
        log.info("registered database %r (%s)", name, parsed.engine)
        return await self.get(name)

    async def ensure_default(self, url: str) -> None:
        """Record the configured default database: registered on the first start, changed when its URL
        changed since; nothing when it is as recorded (any number of processes may run this at once)."""
        parsed = parse_database_url(url, from_api=False)
        metadata = {"actor": "configuration"}
        for _ in range(_CONFLICT_RETRIES):
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    state = await self.load(DEFAULT_DATABASE, conn=conn)
                    encrypted = self.secrets.encrypt(url)
                    event: DatabaseEvent
                    if not state.registered:
                        event = DatabaseRegistered(
                            name=DEFAULT_DATABASE,
                            engine=parsed.engine,
                            display=parsed.display,
                            url_encrypted=encrypted,
                            key_id=self.secrets.key_id,
                            source="config",
                            server_version=None,
                        )
                    elif self.secrets.decrypt(state.url_encrypted) == url:
                        return
                    else:
                        event = DatabaseUrlChanged(
                            name=DEFAULT_DATABASE,
                            engine=parsed.engine,
                            display=parsed.display,
                            url_encrypted=encrypted,
                            key_id=self.secrets.key_id,
                        )
                    await self._commit(conn, state, [event], metadata)
                    log.info("default database %s (%s)", event.type_name(), parsed.engine)
                    return
            except WrongExpectedVersion:
                continue  # another process recorded it first: look again
        raise RuntimeError("the default database kept changing concurrently")

    async def unregister(self, *, name: str, metadata: dict[str, Any]) -> None:
        """Forget a database that holds no live table (its tables' history stays)."""
        if name == DEFAULT_DATABASE:
            raise DatabaseConfigured(
                f"database {name!r} comes from SCHEMASAGA_BYODB_URL and cannot be unregistered"
            )
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(Q["lock_database"], {"name": name})
                state = await self.load(name, conn=conn)
                if not state.registered:
                    raise DatabaseNotFound(f"no database named {name!r}")
                row = await (await conn.execute(Q["live_tables"], {"name": name})).fetchone()
                live = int(row[0]) if row else 0
                if live:
                    raise DatabaseInUse(f"database {name!r} holds {live} live table(s); delete them first")
                await self._commit(conn, state, [DatabaseUnregistered(name=name)], metadata)
        except WrongExpectedVersion:
            raise DatabaseInUse(f"database {name!r} changed concurrently; try again") from None
        self.catalog.forget(name)
        log.info("unregistered database %r", name)

    async def check(self, *, name: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """Try the database now; a change of reachability or server version is recorded."""
        state = await self.load(name)
        if not state.registered:
            raise DatabaseNotFound(f"no database named {name!r}")
        adapter = await asyncio.to_thread(self.catalog.adapter, name)
        error: str | None = None
        try:
            version: str | None = await asyncio.wait_for(
                asyncio.to_thread(_ping, adapter), timeout=self._probe_timeout
            )
            status = STATUS_AVAILABLE
        except TimeoutError:
            status, version = STATUS_UNREACHABLE, state.server_version
            error = f"no answer within {self._probe_timeout:.0f}s"
        except ByodbError as exc:
            status, version = STATUS_UNREACHABLE, state.server_version
            error = self._redacted(state, str(exc))
        if (status, version) != (state.status, state.server_version):
            event = DatabaseStatusChanged(name=name, status=status, server_version=version, error=error)
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    await self._commit(conn, await self.load(name, conn=conn), [event], metadata)
            except WrongExpectedVersion:
                pass  # a concurrent check recorded it; the answer below is still what was seen now
        return {
            "name": name,
            "reachable": status == STATUS_AVAILABLE,
            "status": status,
            "server_version": version,
            "error": error,
        }

    async def rotate(self, new: SecretBox, *, metadata: dict[str, Any]) -> list[str]:
        """Encrypt every stored URL not yet under ``new``'s first key with it, in one transaction.

        ``new`` must decrypt the current ciphertexts too (give it the old key after the new one)."""
        rotated: list[str] = []
        async with self.pool.connection() as conn, conn.transaction():
            rows = await (await conn.execute(Q["encrypted_for_update"])).fetchall()
            for name, url_encrypted, key_id in rows:
                if key_id == new.key_id and new.can_decrypt(url_encrypted):
                    continue
                url = new.decrypt(url_encrypted)
                state = await self.load(name, conn=conn)
                event = DatabaseCredentialsRotated(
                    name=name, url_encrypted=new.encrypt(url), key_id=new.key_id, previous_key_id=key_id
                )
                await self._commit(conn, state, [event], metadata)
                rotated.append(name)
        self.secrets = new
        return rotated

    # -- queries ---------------------------------------------------------------------------------

    async def list_databases(self) -> list[dict[str, Any]]:
        return await self._rows(None)

    async def get(self, name: str) -> dict[str, Any]:
        rows = await self._rows(name)
        if not rows:
            raise DatabaseNotFound(f"no database named {name!r}")
        return rows[0]

    async def load(self, name: str, *, conn: AsyncConnection[Any] | None = None) -> DatabaseState:
        return fold(name, await self.store.read_stream(stream_name(name), conn=conn))

    # -- internals -------------------------------------------------------------------------------

    @property
    def _identities(self) -> RegisteredIdentities:
        return RegisteredIdentities(
            pool=self.pool, secrets=self.secrets, limits=self.limits, timeout=self._probe_timeout
        )

    @property
    def _probe_timeout(self) -> float:
        # Connecting, then a few statements; the driver's own connect timeout normally ends it first.
        return float(self.limits.connect_timeout_s * 2 + 5)

    async def _rows(self, name: str | None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["list_databases"], {"name": name})
            return [view(row) for row in await cur.fetchall()]

    async def _commit(
        self,
        conn: AsyncConnection[Any],
        state: DatabaseState,
        events: Sequence[DatabaseEvent],
        metadata: dict[str, Any],
    ) -> None:
        new = [
            NewEvent(
                event_type=e.type_name(),
                data=e.to_data(),
                metadata=dict(metadata),
                schema_version=e.SCHEMA_VERSION,
            )
            for e in events
        ]
        recorded = await self.store.append(
            stream_name(state.name), new, expected_version=state.version, conn=conn
        )
        for event, rec in zip(events, recorded, strict=True):
            state.apply(event, rec.created_at)
        await project(conn, state)

    async def _probe(
        self, name: str, url: str, engine: str, display: dict[str, Any]
    ) -> tuple[str, DatabaseIdentity]:
        """The server version and the database's identity, once a connection works; a clear 422 otherwise."""
        where = _where(engine, display)
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_try_connect, url, self.limits), timeout=self._probe_timeout
            )
        except TimeoutError:
            raise DatabaseUnreachable(
                f"cannot reach database {name!r} ({where}): no answer within {self._probe_timeout:.0f}s"
            ) from None
        except ByodbError as exc:
            message = redact(str(exc), url)
            if _is_auth_failure(exc):
                raise BadCredentials(
                    f"database {name!r} ({where}) refused the credentials: {message}"
                ) from None
            raise DatabaseUnreachable(f"cannot connect to database {name!r} ({where}): {message}") from None

    def _redacted(self, state: DatabaseState, text: str) -> str:
        try:
            return redact(text, self.secrets.decrypt(state.url_encrypted))
        except SecretsError:
            return text


def view(row: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a database: never the URL, nor its password."""
    display = row["display"]
    return {
        "name": row["name"],
        "engine": row["engine"],
        "driver": display.get("driver"),
        "host": display.get("host"),
        "port": display.get("port"),
        "database": display.get("database"),
        "username": display.get("username"),
        "source": row["source"],
        "status": row["status"],
        "server_version": row["server_version"],
        "live_tables": int(row["live_tables"]),
        "key_id": row["key_id"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _where(engine: str, display: dict[str, Any]) -> str:
    if engine == "sqlite":
        return f"sqlite file {display.get('database')}"
    return f"{engine} at {display.get('host')}:{display.get('port')}"


def _already_registered(name: str, other: str | None) -> DatabaseAlreadyRegistered:
    existing = "under another name" if other is None else f"as {other!r}"
    return DatabaseAlreadyRegistered(
        f"cannot register {name!r}: the database it connects to is registered already {existing}, and "
        "two names for one database would share its tables (a copy made from a base backup or a data "
        "directory of a registered PostgreSQL or MariaDB server counts as that server)"
    )


def _try_connect(url: str, limits: DdlLimits) -> tuple[str, DatabaseIdentity]:
    try:
        adapter = open_adapter(url, limits=limits)
    except Exception as exc:
        raise classify(exc, context="connect") from None
    try:
        return _ping(adapter), adapter.identity()
    finally:
        adapter.dispose()


def _ping(adapter: ByodbAdapter) -> str:
    adapter.ping()
    return adapter.server_version()


def _is_auth_failure(exc: ByodbError) -> bool:
    if exc.engine == "mysql":
        return exc.code in _MYSQL_AUTH_CODES
    if exc.engine == "postgresql":
        text = exc.message.lower()
        role_missing = "role " in text and "does not exist" in text
        return role_missing or any(word in text for word in _PG_AUTH_WORDS)
    return False
