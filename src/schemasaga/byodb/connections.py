"""The BYODBs this process can reach: their engines and adapters, by database name.

The registry of databases lives in the core database (rm_databases, from the ``Database$<name>`` streams);
every process (API replicas, workers) keeps these connections to what it holds. They are loaded at start,
reloaded every ``catalog_refresh_interval`` seconds, and reloaded at once when asked for a name this process
does not know, before answering :class:`DatabaseNotFound`: a worker learns of a database registered by
another process the first time a saga needs it.

Each registration's adapter checks every new connection it makes against the identity stored when it was
registered, and PostgreSQL ones against the service's own core database (:mod:`schemasaga.byodb.verify`):
a host name re-pointed since does not take its DDL to another server. The configured default (pinned) is
the operator's, and is not checked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from schemasaga.byodb.adapter import ByodbAdapter, DdlLimits, open_adapter
from schemasaga.byodb.engines import parse_url
from schemasaga.byodb.identifiers import InvalidIdentifier, validate_identifier
from schemasaga.byodb.verify import CoreIdentity, Expected
from schemasaga.domain.errors import CredentialsUnavailable, DatabaseNotFound, InvalidName

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegisteredUrl:
    """A registered database as the core database knows it. ``url`` is None when it cannot be decrypted;
    ``identity`` is the one stored when it was registered (None: none was)."""

    name: str
    engine: str
    url: str | None
    identity: str | None = None

    def __repr__(self) -> str:  # never the URL
        return f"RegisteredUrl(name={self.name!r}, engine={self.engine!r})"


class RegisteredUrls(Protocol):
    """Where the registered databases are read from (the core database's registry)."""

    def load(self) -> Sequence[RegisteredUrl]:
        """Blocking read, for callers in a worker thread (and the rare miss on the event loop)."""
        ...

    async def aload(self) -> Sequence[RegisteredUrl]: ...


@dataclass(slots=True)
class _Entry:
    engine: str
    url: str | None
    pinned: bool = False
    identity: str | None = None


# A name that a reload did not find is not reloaded for again on every look for this long (a list of
# tables in an unregistered database would otherwise reload the registry on each answer); the
# periodic reload (keep_fresh) and a registration in this process still see it at once.
MISS_QUIET_S = 5.0


class Connections:
    """Databases by name. Adapters are opened lazily and shared (each holds a connection pool)."""

    def __init__(
        self, *, limits: DdlLimits, source: RegisteredUrls | None = None, core: CoreIdentity | None = None
    ) -> None:
        """``core``: the service's own core database, which no registered PostgreSQL database's
        connection may reach (``None``: not compared, in processes that do not run the service)."""
        self._limits = limits
        self._source = source
        self.core = core
        self._entries: dict[str, _Entry] = {}
        self._adapters: dict[str, ByodbAdapter] = {}
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        # Local changes (register/forget) win over a reload whose snapshot was read before them.
        self._generation = 0
        self._changed_at: dict[str, int] = {}
        self._background: asyncio.Task[None] | None = None
        # Names a background reload looked for and did not find, with when (time.monotonic()).
        self._missed: dict[str, float] = {}

    # -- registration ----------------------------------------------------------------------------

    def register(self, name: str, url: str, *, pinned: bool = False, identity: str | None = None) -> None:
        """Know ``name`` at ``url``, a database whose stored identity is ``identity``. A pinned entry (the
        configured default) is never changed by a reload, and its connections are not checked."""
        with self._lock:
            self._generation += 1
            self._changed_at[name] = self._generation
            entry = self._entries.get(name)
            if entry is not None and entry.url == url and entry.identity == identity:
                entry.pinned = entry.pinned or pinned
                return
            old = self._adapters.pop(name, None)
            self._entries[name] = _Entry(parse_url(url)[0], url, pinned, identity)
        if old is not None:
            old.dispose()

    def forget(self, name: str) -> None:
        with self._lock:
            self._generation += 1
            self._changed_at[name] = self._generation
            self._entries.pop(name, None)
            old = self._adapters.pop(name, None)
        if old is not None:
            old.dispose()

    # -- loading from the core database ----------------------------------------------------------

    def reload(self) -> None:
        """Reload from the source, blocking (a miss in a worker thread)."""
        if self._source is None:
            return
        with self._reload_lock:
            generation = self._generation
            self._apply(self._source.load(), generation)

    async def refresh(self) -> None:
        """Reload from the source."""
        if self.core is not None:
            await self.core.refresh()
        if self._source is None:
            return
        generation = self._generation
        self._apply(await self._source.aload(), generation)

    async def keep_fresh(self, every: float) -> None:
        """Reload now and then, until cancelled: another process may have changed the registry."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception as exc:
                # Never the URLs: these errors name databases only.
                log.warning("reloading the registered databases failed: %s", type(exc).__name__)

    async def ensure(self, name: str) -> None:
        """Raise :class:`DatabaseNotFound` unless ``name`` is registered (reloading once if unknown here)."""
        if name not in self._entries:
            await self.refresh()
        if name not in self._entries:
            raise DatabaseNotFound(f"no database named {name!r}")

    def _apply(self, entries: Sequence[RegisteredUrl], generation: int) -> None:
        loaded = {e.name: e for e in entries}
        disposed: list[ByodbAdapter] = []
        with self._lock:
            for name in set(self._entries) | set(loaded):
                if self._changed_at.get(name, 0) > generation:
                    continue  # registered or forgotten here after the snapshot was read
                current = self._entries.get(name)
                if current is not None and current.pinned:
                    continue
                new = loaded.get(name)
                if new is None:
                    self._entries.pop(name, None)
                elif current is None:
                    self._entries[name] = _Entry(new.engine, new.url, identity=new.identity)
                elif new.url is None:
                    if current.url is None:
                        current.engine = new.engine
                    else:
                        # Keep working with what this process decrypted before (a rotation in progress).
                        log.warning(
                            "database %r: stored URL not decryptable with this key; kept cached", name
                        )
                    continue
                elif new.url != current.url or new.identity != current.identity:
                    self._entries[name] = _Entry(new.engine, new.url, identity=new.identity)
                else:
                    continue
                old = self._adapters.pop(name, None)
                if old is not None:
                    disposed.append(old)
        for adapter in disposed:
            adapter.dispose()

    def _get(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            self.reload()
            entry = self._entries.get(name)
        if entry is None:
            raise DatabaseNotFound(f"no database named {name!r}")
        return entry

    # -- queries ---------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._entries)

    def engine(self, name: str) -> str:
        return self._get(name).engine

    def known_engine(self, name: str) -> str | None:
        """The engine of ``name`` if this process knows it, without reloading: for display, on the
        event loop. A miss starts a reload in the background (at most one at a time)."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.engine
        missed = self._missed.get(name)
        if missed is not None and time.monotonic() - missed < MISS_QUIET_S:
            return None
        if self._source is not None and self._background is None:
            self._background = asyncio.get_running_loop().create_task(self._refresh_in_background(name))
        return None

    async def _refresh_in_background(self, name: str) -> None:
        try:
            await self.refresh()
            if name not in self._entries:
                if len(self._missed) >= 1024:
                    self._missed.clear()
                self._missed[name] = time.monotonic()
        except Exception as exc:  # the next miss, or the periodic refresh, tries again
            log.warning("reloading the registered databases failed: %s", type(exc).__name__)
        finally:
            self._background = None

    def open_adapter(self, name: str) -> ByodbAdapter | None:
        """The adapter of ``name`` if this process has it open, without blocking: a saga and a request
        on the event loop skip the hand-over to a thread that :meth:`adapter` needs to open one."""
        return self._adapters.get(name)

    def adapter(self, name: str) -> ByodbAdapter:
        entry = self._get(name)
        with self._lock:
            adapter = self._adapters.get(name)
            if adapter is not None:
                return adapter
            entry = self._entries.get(name, entry)  # replaced meanwhile: use the newest URL
            if entry.url is None:
                raise CredentialsUnavailable(
                    f"database {name!r} is registered, but its credentials cannot be decrypted with this "
                    "process's SCHEMASAGA_SECRET_KEY"
                )
            adapter = self._adapters[name] = open_adapter(
                entry.url, limits=self._limits, expected=self._expected(name, entry)
            )
            return adapter

    def _expected(self, name: str, entry: _Entry) -> Expected | None:
        """What the connections of ``name`` must reach: the identity stored with it and, on PostgreSQL,
        not the core database. The configured default is the operator's: nothing is checked."""
        if entry.pinned:
            return None
        core = self.core if entry.engine == "postgresql" else None
        return Expected(name=name, engine=entry.engine, stored=entry.identity, core=core)

    def validate_identifier(self, name: str, *, database: str, kind: str) -> None:
        try:
            validate_identifier(name, engine=self.engine(database), kind=kind)
        except InvalidIdentifier as exc:
            raise InvalidName(str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
        for adapter in adapters:
            adapter.dispose()
