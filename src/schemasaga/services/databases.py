"""The database registry's commands: register, check, unregister, the configured default, key rotation.

Each command is one unit of work on the database's stream (``Database$<name>``) and its read model; this
process's connections learn of it right after the commit, the other processes' at their next reload (or
at once when they are asked for the name).

One database, one name: two names for one physical database would share its tables (a table created
under each would be one table, and deleting one would drop the table the other still reports). URLs
cannot tell (``localhost`` and ``127.0.0.1``, a symbolic link to a SQLite file), so a registration asks
the server which database it is (:mod:`schemasaga.byodb.identity`) and compares it with the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from schemasaga.byodb.engines import parse_url
from schemasaga.byodb.errors import ByodbError
from schemasaga.byodb.identity import DatabaseIdentity, Match
from schemasaga.byodb.sqlite_files import shared_with
from schemasaga.byodb.urls import parse_database_url, redact, with_real_path
from schemasaga.domain.database import (
    DEFAULT_DATABASE,
    STATUS_AVAILABLE,
    STATUS_UNREACHABLE,
    DatabaseCredentialsRotated,
    DatabaseEvent,
    DatabaseRegistered,
    DatabaseState,
    DatabaseStatusChanged,
    DatabaseUnregistered,
    DatabaseUrlChanged,
    validate_name,
)
from schemasaga.domain.errors import (
    BadCredentials,
    DatabaseAlreadyRegistered,
    DatabaseConfigured,
    DatabaseExists,
    DatabaseInUse,
    DatabaseNotFound,
    DatabaseUnreachable,
    OwnDatabase,
    SqliteCompanionFile,
)
from schemasaga.domain.policy import RegistrationPolicy
from schemasaga.secrets import SecretBox, SecretsError
from schemasaga.services.ports import Connections, DatabaseProbe, SchemaAdapter
from schemasaga.services.ports import OwnDatabase as OwnDatabasePort
from schemasaga.services.unit_of_work import Session, UnitOfWork
from schemasaga.services.views import DatabaseView, ReadModels

log = logging.getLogger(__name__)

# Error codes that mean "the server answered, and refused these credentials".
_MYSQL_AUTH_CODES = frozenset({"1044", "1045", "1698"})
_PG_AUTH_WORDS = ("authentication failed", "password", "no pg_hba.conf entry", "permission denied")
# Registered databases whose identity is read at once, to compare with a new registration.
_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    reachable: bool
    status: str
    server_version: str | None
    error: str | None


class DatabaseCommands:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        reads: ReadModels,
        connections: Connections,
        probe: DatabaseProbe,
        secrets: SecretBox,
        policy: RegistrationPolicy,
        own: OwnDatabasePort,
    ) -> None:
        self.uow = uow
        self.own = own
        self.reads = reads
        self.connections = connections
        self.probe = probe
        self.secrets = secrets
        self.policy = policy

    # -- commands --------------------------------------------------------------------------------

    async def register(self, *, name: str, url: str, metadata: Mapping[str, Any]) -> DatabaseView:
        """Register ``url`` as ``name`` once a connection to it works; nothing is written otherwise.

        A SQLite file is registered by its real path, the one the policy checked: a path through a
        symbolic link (``/proc/self/cwd/...``) could reach another file in another process, or later."""
        validate_name(name)
        parsed = parse_database_url(url)
        if parsed.engine == "sqlite":
            url = await asyncio.to_thread(with_real_path, url)
            parsed = parse_database_url(url)
        self.policy.check(
            engine=parsed.engine, host=parsed.display["host"], sqlite_path=parsed.display["database"]
        )
        if (await self.uow.load_database(name)).registered:
            raise DatabaseExists(f"a database named {name!r} is registered already")
        if parsed.engine == "sqlite":
            await self._refuse_shared_sqlite_file(name, parsed.display["database"])
        server_version, identity = await self._probe(name, url, parsed.engine, parsed.display)
        if parsed.engine == "postgresql":
            await self._refuse_own(name, identity)
        existing = await self._registered_as(engine=parsed.engine, identity=identity)
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

        async def record(session: Session) -> None:
            state = await session.database(name)
            if state.registered:
                raise DatabaseExists(f"a database named {name!r} is registered already")
            session.record(state, event)

        try:
            await self.uow.run(record, metadata=metadata)
        except DatabaseAlreadyRegistered:
            # Registered concurrently under another name: the read model's unique identity decided.
            if event.identity is None:
                raise
            raise _already_registered(name, await self.reads.identity_holder(event.identity)) from None
        self.connections.register(name, url, identity=event.identity)
        log.info("registered database %r (%s)", name, parsed.engine)
        return await self.get(name)

    async def ensure_default(self, url: str) -> None:
        """Record the configured default database: registered on the first start, changed when its URL
        changed since; nothing when it is as recorded (any number of processes may run this at once)."""
        parsed = parse_database_url(url, from_api=False)

        async def record(session: Session) -> DatabaseEvent | None:
            state = await session.database(DEFAULT_DATABASE)
            event: DatabaseEvent
            if not state.registered:
                event = DatabaseRegistered(
                    name=DEFAULT_DATABASE,
                    engine=parsed.engine,
                    display=parsed.display,
                    url_encrypted=self.secrets.encrypt(url),
                    key_id=self.secrets.key_id,
                    source="config",
                    server_version=None,
                )
            elif self.secrets.decrypt(state.url_encrypted) == url:
                return None
            else:
                event = DatabaseUrlChanged(
                    name=DEFAULT_DATABASE,
                    engine=parsed.engine,
                    display=parsed.display,
                    url_encrypted=self.secrets.encrypt(url),
                    key_id=self.secrets.key_id,
                )
            session.record(state, event)
            return event

        event = await self.uow.run(record, metadata={"actor": "configuration"})
        if event is not None:
            log.info("default database %s (%s)", event.type_name(), parsed.engine)

    async def unregister(self, *, name: str, metadata: Mapping[str, Any]) -> None:
        """Forget a database that holds no live table and nothing in the trash (its tables' history stays):
        once forgotten, what its trash holds could be neither restored nor purged."""
        if name == DEFAULT_DATABASE:
            raise DatabaseConfigured(
                f"database {name!r} comes from SCHEMASAGA_BYODB_URL and cannot be unregistered"
            )

        async def record(session: Session) -> None:
            # Exclusive: a table being created in it now commits first (and is counted) or waits.
            await session.lock_database(name, exclusive=True)
            state = await session.database(name)
            if not state.registered:
                raise DatabaseNotFound(f"no database named {name!r}")
            live = await session.live_tables(name)
            if live:
                raise DatabaseInUse(f"database {name!r} holds {live} live table(s); delete them first")
            held = await session.trash_held(name)
            if held:
                entries = "1 entry" if held == 1 else f"{held} entries"
                raise DatabaseInUse(
                    f"database {name!r} holds {entries} in the trash; restore or purge them first"
                    " (GET /v1/trash?database=..., DELETE /v1/trash/{trash_id})"
                )
            session.record(state, DatabaseUnregistered(name=name))

        await self.uow.run(record, metadata=metadata)
        self.connections.forget(name)
        log.info("unregistered database %r", name)

    async def check(self, *, name: str, metadata: Mapping[str, Any]) -> CheckResult:
        """Try the database now; a change of reachability or server version is recorded."""
        state = await self.uow.load_database(name)
        if not state.registered:
            raise DatabaseNotFound(f"no database named {name!r}")
        adapter = await asyncio.to_thread(self.connections.adapter, name)
        error: str | None = None
        timeout = self.probe_timeout
        try:
            version: str | None = await asyncio.wait_for(adapter.run(_version, adapter), timeout=timeout)
            status = STATUS_AVAILABLE
        except TimeoutError:
            status, version = STATUS_UNREACHABLE, state.server_version
            error = f"no answer within {timeout:.0f}s"
        except ByodbError as exc:
            status, version = STATUS_UNREACHABLE, state.server_version
            error = self._redacted(state, str(exc))

        async def record(session: Session) -> None:
            current = await session.database(name)
            if current.registered and (status, version) != (current.status, current.server_version):
                session.record(
                    current,
                    DatabaseStatusChanged(name=name, status=status, server_version=version, error=error),
                )

        await self.uow.run(record, metadata=metadata)
        return CheckResult(name, status == STATUS_AVAILABLE, status, version, error)

    async def rotate(self, new: SecretBox, *, metadata: Mapping[str, Any]) -> list[str]:
        """Encrypt every stored URL not yet under ``new``'s first key with it, in one transaction.

        ``new`` must decrypt the current ciphertexts too (give it the old key after the new one)."""

        async def record(session: Session) -> list[str]:
            rotated: list[str] = []
            for name in await session.lock_registered_databases():
                state = await session.database(name)
                if state.key_id == new.key_id and new.can_decrypt(state.url_encrypted):
                    continue
                url = new.decrypt(state.url_encrypted)
                event = DatabaseCredentialsRotated(
                    name=name, url_encrypted=new.encrypt(url), key_id=new.key_id, previous_key_id=state.key_id
                )
                session.record(state, event)
                rotated.append(name)
            return rotated

        rotated = await self.uow.run(record, metadata=metadata)
        self.secrets = new
        return rotated

    # -- queries ---------------------------------------------------------------------------------

    async def list_databases(
        self, *, after: str | None = None, limit: int | None = None, only: Collection[str] | None = None
    ) -> list[DatabaseView]:
        """By name, keyset-paged; of ``only`` when given."""
        return await self.reads.list_databases(after=after, limit=limit, databases=only)

    async def get(self, name: str) -> DatabaseView:
        rows = await self.reads.list_databases(name=name)
        if not rows:
            raise DatabaseNotFound(f"no database named {name!r}")
        return rows[0]

    # -- internals -------------------------------------------------------------------------------

    @property
    def probe_timeout(self) -> float:
        return self.probe.timeout

    async def _probe(
        self, name: str, url: str, engine: str, display: dict[str, Any]
    ) -> tuple[str, DatabaseIdentity]:
        """The server version and the database's identity, once a connection works; a clear 422 otherwise."""
        where = _where(engine, display)
        try:
            return await self.probe.probe(url)
        except TimeoutError:
            raise DatabaseUnreachable(
                f"cannot reach database {name!r} ({where}): no answer within {self.probe_timeout:.0f}s"
            ) from None
        except ByodbError as exc:
            message = redact(str(exc), url)
            if _is_auth_failure(exc):
                raise BadCredentials(
                    f"database {name!r} ({where}) refused the credentials: {message}"
                ) from None
            raise DatabaseUnreachable(f"cannot connect to database {name!r} ({where}): {message}") from None

    async def _refuse_own(self, name: str, identity: DatabaseIdentity) -> None:
        """Refuse the service's own core database (any schema of it), and any database of the embedded
        server that holds it: through them an API user would read and change the event store."""
        own = await self.own.identity()
        if identity.same_database_as(own):
            raise OwnDatabase(f"cannot register {name!r}: it is this service's own core database")
        if self.own.whole_server and identity.same_server_as(own):
            raise OwnDatabase(
                f"cannot register {name!r}: it is on the embedded PostgreSQL server that holds this "
                "service's own core database"
            )

    async def _refuse_shared_sqlite_file(self, name: str, path: str) -> None:
        """Refuse a SQLite file that is another registration's journal, WAL or shared-memory file under
        another name (a hard link), or whose own such file is another registration's database."""
        registered: dict[str, str] = {}
        for stored in await self.reads.stored_identities(engine="sqlite"):
            try:
                stored_url = parse_url(self.secrets.decrypt(stored.url_encrypted))[1]
            except (SecretsError, ByodbError):
                continue  # not comparable here; its own name rule still holds
            registered[stored.name] = stored_url.database or ""
        other = await asyncio.to_thread(shared_with, path, registered)
        if other is not None:
            raise SqliteCompanionFile(
                f"cannot register {name!r}: its file is the journal, WAL or shared-memory file of "
                f"database {other!r}, or that database's file is one of its own; the two would destroy "
                "each other's data"
            )

    async def _registered_as(self, *, engine: str, identity: DatabaseIdentity) -> str | None:
        """The name of the registered database of ``engine`` whose identity is ``identity``, if any.

        A registered database whose stored identity cannot decide (none stored: the configured default,
        registrations older than identities; or one that only a fresh reading compares) is asked now."""
        to_ask: list[tuple[str, str]] = []
        for stored in await self.reads.stored_identities(engine=engine):
            match identity.against_stored(stored.identity):
                case Match.SAME:
                    return stored.name
                case Match.UNKNOWN:
                    to_ask.append((stored.name, stored.url_encrypted))
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def ask(name: str, url_encrypted: str) -> DatabaseIdentity | None:
            async with gate:
                return await self._identity_now(name, url_encrypted)

        found = await asyncio.gather(*(ask(name, encrypted) for name, encrypted in to_ask))
        for (name, _), theirs in zip(to_ask, found, strict=True):
            if theirs is not None and identity.same_as(theirs):
                return name
        return None

    async def _identity_now(self, name: str, url_encrypted: str) -> DatabaseIdentity | None:
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
            return await self.probe.identify(url)
        except TimeoutError:
            reason = f"no answer within {self.probe_timeout:.0f}s"
        except ByodbError as exc:
            reason = redact(str(exc), url)
        log.warning("database %r not compared with a new registration: unreachable (%s)", name, reason)
        return None

    def _redacted(self, state: DatabaseState, text: str) -> str:
        try:
            return redact(text, self.secrets.decrypt(state.url_encrypted))
        except SecretsError:
            return text


def _version(adapter: SchemaAdapter) -> str:
    adapter.ping()
    return adapter.server_version()


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


def _is_auth_failure(exc: ByodbError) -> bool:
    if exc.engine == "mysql":
        return exc.code in _MYSQL_AUTH_CODES
    if exc.engine == "postgresql":
        text = exc.message.lower()
        role_missing = "role " in text and "does not exist" in text
        return role_missing or any(word in text for word in _PG_AUTH_WORDS)
    return False
