"""In-memory implementations of the services' ports, for unit tests that run in milliseconds.

They are real implementations, not mocks: an event store with expected versions and snapshots, read
models that hold names and identities unique as the PostgreSQL ones do, a job queue, and user databases
whose tables a step really creates and changes. What they cannot prove (SQL, drivers, concurrency) the
integration and acceptance tests prove against the real servers.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from schemasaga.byodb.errors import PermanentByodbError, TableThere
from schemasaga.byodb.identity import DatabaseIdentity
from schemasaga.domain.changes import Change
from schemasaga.domain.columns import Column, Index, TableSchema
from schemasaga.domain.database import DatabaseState
from schemasaga.domain.errors import DatabaseAlreadyRegistered, DatabaseNotFound, NameTaken
from schemasaga.domain.plan import Plan, Statement
from schemasaga.domain.schema import LiveColumn, LiveTable, diff
from schemasaga.domain.table import Table
from schemasaga.eventstore import NewEvent, RecordedEvent, WrongExpectedVersion
from schemasaga.services.views import DatabaseView, StoredIdentity

T = TypeVar("T")


@dataclass
class Job:
    id: int
    table_id: UUID
    operation_id: UUID
    delay: float


@dataclass
class CoreState:
    streams: dict[str, list[RecordedEvent]] = field(default_factory=dict)
    snapshots: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    # rm_tables: (database, name, holds_name, deleted) by table id; rm_databases by name.
    tables: dict[UUID, tuple[str, str, bool, bool]] = field(default_factory=dict)
    databases: dict[str, DatabaseState] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    running: set[UUID] = field(default_factory=set)
    starts: dict[UUID, int] = field(default_factory=dict)
    position: int = 0
    idempotency_keys: dict[tuple[str, str], str] = field(default_factory=dict)


class MemoryStreams:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    async def read_stream(
        self, stream: str, *, from_version: int = 0, to_version: int | None = None
    ) -> list[RecordedEvent]:
        events = self.state.streams.get(stream, [])
        last = len(events) - 1 if to_version is None else to_version
        return [e for e in events if e.version is not None and from_version <= e.version <= last]

    async def load_snapshot(
        self, stream: str, *, max_version: int | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        saved = self.state.snapshots.get(stream, [])
        found = [s for s in saved if max_version is None or s[0] <= max_version]
        return copy.deepcopy(max(found, key=lambda s: s[0])) if found else None

    async def latest_snapshots(self, streams: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        found = {s: await self.load_snapshot(s) for s in streams}
        return {s: snapshot for s, snapshot in found.items() if snapshot is not None}

    async def read_streams_from(self, from_versions: Mapping[str, int]) -> list[RecordedEvent]:
        return [
            dataclasses.replace(e, stream=s)
            for s in sorted(from_versions)
            for e in await self.read_stream(s, from_version=from_versions[s])
        ]


class MemoryTransaction(MemoryStreams):
    def __init__(self, state: CoreState, core: MemoryCore) -> None:
        super().__init__(state)
        self.core = core

    async def lock_stream(self, stream: str) -> int:
        self.core.locked.append(stream)
        return len(self.state.streams.get(stream, [])) - 1

    async def append(
        self, stream: str, events: Sequence[NewEvent], *, expected_version: int
    ) -> list[RecordedEvent]:
        existing = self.state.streams.setdefault(stream, [])
        if len(existing) - 1 != expected_version:
            raise WrongExpectedVersion(stream, expected_version, len(existing) - 1)
        recorded = []
        for event in events:
            self.state.position += 1
            recorded.append(
                RecordedEvent(
                    event_id=event.event_id,
                    event_type=event.event_type,
                    data=copy.deepcopy(dict(event.data)),
                    metadata=dict(event.metadata),
                    schema_version=event.schema_version,
                    position=self.state.position,
                    created_at=self.core.now(),
                    valid_at=None,
                    stream=stream,
                    version=len(existing),
                )
            )
            existing.append(recorded[-1])
        return recorded

    async def save_snapshot(self, stream: str, version: int, state: dict[str, Any]) -> None:
        self.state.snapshots.setdefault(stream, []).append((version, copy.deepcopy(state)))

    async def project_table(self, table: Table, recorded: Sequence[RecordedEvent]) -> None:
        key = (table.database, table.name.lower())
        for other_id, (database, name, holds, _) in self.state.tables.items():
            if other_id != table.table_id and holds and table.holds_name and (database, name.lower()) == key:
                raise NameTaken(f"a table named {table.name!r} already exists in database {table.database!r}")
        self.state.tables[table.table_id] = (table.database, table.name, table.holds_name, not table.live)

    async def project_database(self, state: DatabaseState) -> None:
        if not state.registered:
            self.state.databases.pop(state.name, None)
            return
        for other in self.state.databases.values():
            if other.name != state.name and state.identity is not None and other.identity == state.identity:
                raise DatabaseAlreadyRegistered(f"{state.name!r} is registered already")
        self.state.databases[state.name] = copy.deepcopy(state)

    async def defer_saga(self, *, table_id: UUID, operation_id: UUID, delay: float = 0.0) -> None:
        self.state.jobs.append(Job(len(self.state.jobs) + 1, table_id, operation_id, delay))

    async def lock_database(self, name: str, *, exclusive: bool) -> bool:
        return name in self.state.databases

    async def name_held(self, database: str, name: str) -> bool:
        return any(
            db == database and held and held_name.lower() == name.lower()
            for db, held_name, held, _ in self.state.tables.values()
        )

    async def live_tables(self, database: str) -> int:
        return sum(1 for db, _, _, deleted in self.state.tables.values() if db == database and not deleted)

    async def trash_held(self, database: str) -> int:
        return 0  # this fake keeps no trash (tests/integration/test_trash.py covers it on PostgreSQL)

    async def lock_registered_databases(self) -> list[str]:
        return sorted(self.state.databases)

    async def claim_idempotency_key(self, claim: Any, *, operation_id: str | None) -> bool:
        key = (claim.principal, claim.key)
        if key in self.state.idempotency_keys:
            return False
        self.state.idempotency_keys[key] = claim.fingerprint
        return True


class MemoryStarting(MemoryStreams):
    def __init__(self, state: CoreState, core: MemoryCore) -> None:
        super().__init__(state)
        self._core = core

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        return await self._core.start_operation(operation_id, job_id=job_id)


class MemoryCore:
    """:class:`~schemasaga.services.ports.CoreDatabase` in memory: a transaction works on a copy of the
    state, which replaces the committed state when it ends without an error."""

    def __init__(self) -> None:
        self.state = CoreState()
        self.locked: list[str] = []
        self.commits = 0
        self._clock = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self._clock += timedelta(milliseconds=1)
        return self._clock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        working = copy.deepcopy(self.state)
        yield MemoryTransaction(working, self)
        self.state = working
        self.commits += 1

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[MemoryStreams]:
        yield MemoryStreams(self.state)

    @asynccontextmanager
    async def starting(self) -> AsyncIterator[MemoryStarting]:
        yield MemoryStarting(self.state, self)

    async def start_operation(self, operation_id: UUID, *, job_id: int | None) -> int | None:
        if job_id is not None and any(
            j.operation_id == operation_id and j.id != job_id and j.delay > 0 for j in self.state.jobs
        ):
            return None
        self.state.running.add(operation_id)
        self.state.starts[operation_id] = self.state.starts.get(operation_id, 0) + 1
        return self.state.starts[operation_id]

    # -- what tests look at ----------------------------------------------------------------------

    def events(self, stream: str | None = None) -> list[str]:
        streams = [stream] if stream is not None else list(self.state.streams)
        return [e.event_type for s in streams for e in self.state.streams.get(s, [])]

    @property
    def jobs(self) -> list[Job]:
        return self.state.jobs


class MemoryDatabase:
    """:class:`~schemasaga.services.ports.SchemaAdapter` over tables held in memory, with the real
    adapter's inspect-first, idempotent behaviour. ``fail`` maps a method name to the errors its next
    calls raise, in order."""

    def __init__(self, engine: str = "postgresql") -> None:
        self.engine = engine
        self.tables: dict[str, LiveTable] = {}
        self.fail: dict[str, list[Exception]] = {}
        self.calls: list[tuple[str, str]] = []

    async def run(self, action: Callable[..., T], /, *args: Any) -> T:
        return action(*args)

    def _call(self, method: str, target: str) -> None:
        self.calls.append((method, target))
        errors = self.fail.get(method)
        if errors:
            raise errors.pop(0)

    def _find(self, name: str) -> LiveTable | None:
        return next((t for n, t in self.tables.items() if n.lower() == name.lower()), None)

    def inspect_table(self, name: str) -> LiveTable | None:
        self._call("inspect_table", name)
        return self._find(name)

    def inspect_tables(self, names: Sequence[str]) -> list[LiveTable | PermanentByodbError | None]:
        out: list[LiveTable | PermanentByodbError | None] = []
        for name in names:
            try:
                out.append(self.inspect_table(name))
            except PermanentByodbError as exc:
                out.append(exc)
        return out

    def list_tables(self) -> list[str]:
        return sorted(self.tables)

    def is_table(self, live: LiveTable, name: str) -> bool:
        return live.name == name or (self.engine != "postgresql" and live.name.lower() == name.lower())

    def create_table(
        self,
        name: str,
        columns: Sequence[Column],
        indexes: Sequence[Index] = (),
        *,
        refuse_existing: bool = False,
    ) -> bool:
        self._call("create_table", name)
        found = self._find(name)
        if found is not None and refuse_existing:
            raise TableThere(found.name, engine=self.engine)
        if found is not None:
            if diff(TableSchema(name, tuple(columns), tuple(indexes)), found):  # as the adapter's
                raise PermanentByodbError(f"a table {found.name!r} already exists with another shape")
            return False
        self.tables[name] = LiveTable(
            name, tuple(live(c) for c in columns), fold_case=self.engine != "postgresql"
        )
        return True

    def add_column(self, table: str, column: Column) -> bool:
        self._call("add_column", table)
        found = self._require(table)
        if found.column(column.name) is not None:
            return False
        self.tables[found.name] = LiveTable(found.name, (*found.columns, live(column)), found.fold_case)
        return True

    def drop_column(self, table: str, column: str) -> bool:
        self._call("drop_column", table)
        found = self._require(table)
        kept = tuple(c for c in found.columns if not found.is_column(c.name, column))
        self.tables[found.name] = LiveTable(found.name, kept, found.fold_case)
        return len(kept) != len(found.columns)

    def drop_table(self, name: str) -> bool:
        self._call("drop_table", name)
        found = self._find(name)
        if found is None or not self.is_table(found, name):
            return False
        del self.tables[found.name]
        return True

    def blockers(self, table: str) -> list[dict[str, object]]:
        return []

    def check_rows(self, before: TableSchema, after: TableSchema, change: Change) -> None:
        self._call("check_rows", before.name)

    def live_state(self, before: TableSchema, after: TableSchema, change: Change | None = None) -> str:
        self._call("live_state", before.name)
        return "after" if after.name != before.name and self._find(after.name) is not None else "before"

    def apply_plan(
        self, before: TableSchema, after: TableSchema, plan: Plan, *, change: Change | None = None
    ) -> bool:
        self._call("apply_plan", before.name)
        if after.name != before.name and self._find(after.name) is not None:
            return False  # done already (inspect-first, as the real adapter)
        found = self._require(before.name)
        del self.tables[found.name]
        self.tables[after.name] = LiveTable(
            after.name, tuple(live(c) for c in after.columns), found.fold_case
        )
        return True

    def plan_change(self, before: TableSchema | None, after: TableSchema, change: Change) -> Plan:
        self._call("plan_change", after.name)
        return Plan(self.engine, (Statement(f"-- {change.kind.value} {after.name}", "none"),))

    def ping(self) -> None:
        self._call("ping", "")

    def server_version(self) -> str:
        return "memory 1.0"

    def _require(self, table: str) -> LiveTable:
        found = self._find(table)
        if found is None:
            raise PermanentByodbError(f"table {table!r} does not exist", engine=self.engine)
        return found


def live(column: Column) -> LiveColumn:
    return LiveColumn(
        name=column.name,
        type=column.type,
        raw_type=column.type.value,
        nullable=column.nullable and not column.primary_key,
        primary_key=column.primary_key,
    )


class MemoryConnections:
    """:class:`~schemasaga.services.ports.Connections` to in-memory databases, all on one engine."""

    def __init__(self, databases: dict[str, MemoryDatabase] | None = None) -> None:
        self.databases = databases if databases is not None else {"default": MemoryDatabase()}
        self.urls: dict[str, str] = {}

    async def ensure(self, name: str) -> None:
        if name not in self.databases:
            raise DatabaseNotFound(f"no database named {name!r}")

    def adapter(self, name: str) -> MemoryDatabase:
        if name not in self.databases:
            raise DatabaseNotFound(f"no database named {name!r}")
        return self.databases[name]

    def open_adapter(self, name: str) -> MemoryDatabase | None:
        return self.databases.get(name)

    def known_engine(self, name: str) -> str | None:
        found = self.databases.get(name)
        return found.engine if found is not None else None

    def validate_identifier(self, name: str, *, database: str, kind: str) -> None:
        from schemasaga.byodb.identifiers import InvalidIdentifier, validate_identifier
        from schemasaga.domain.errors import InvalidName

        try:
            validate_identifier(name, engine=self.adapter(database).engine, kind=kind)
        except InvalidIdentifier as exc:
            raise InvalidName(str(exc)) from exc

    def names(self) -> list[str]:
        return sorted(self.databases)

    def register(self, name: str, url: str, *, pinned: bool = False, identity: str | None = None) -> None:
        self.databases.setdefault(name, MemoryDatabase())
        self.urls[name] = url

    def forget(self, name: str) -> None:
        self.databases.pop(name, None)


class MemoryProbe:
    """:class:`~schemasaga.services.ports.DatabaseProbe` answering from a table of URLs."""

    timeout = 1.0

    def __init__(self) -> None:
        self.identities: dict[str, DatabaseIdentity] = {}
        self.errors: dict[str, Exception] = {}

    async def probe(self, url: str) -> tuple[str, DatabaseIdentity]:
        return "memory 1.0", await self.identify(url)

    async def identify(self, url: str) -> DatabaseIdentity:
        if url in self.errors:
            raise self.errors[url]
        return self.identities.get(url, identity_of(url))


def identity_of(url: str) -> DatabaseIdentity:
    """As the servers give them: a digest, never the URL."""
    return DatabaseIdentity({"sqlite.path": hashlib.sha256(url.encode()).hexdigest()[:32]})


class MemoryOwnDatabase:
    """:class:`~schemasaga.services.ports.OwnDatabase`: the core database's identity, as given."""

    def __init__(self, identity: DatabaseIdentity | None = None, *, whole_server: bool = False) -> None:
        self.own = identity or DatabaseIdentity()
        self.whole_server = whole_server

    async def identity(self) -> DatabaseIdentity:
        return self.own


class MemoryReads:
    """The parts of :class:`~schemasaga.services.views.ReadModels` the database commands use."""

    def __init__(self, core: MemoryCore) -> None:
        self.core = core

    async def stored_identities(self, *, engine: str) -> list[StoredIdentity]:
        return [
            StoredIdentity(s.name, s.url_encrypted, s.identity)
            for s in self.core.state.databases.values()
            if s.engine == engine
        ]

    async def identity_holder(self, identity: str) -> str | None:
        return next((s.name for s in self.core.state.databases.values() if s.identity == identity), None)

    async def list_databases(
        self,
        *,
        name: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        databases: Collection[str] | None = None,
    ) -> list[DatabaseView]:
        views = [
            DatabaseView(
                name=s.name,
                engine=s.engine,
                driver=s.display.get("driver"),
                host=s.display.get("host"),
                port=s.display.get("port"),
                database=s.display.get("database"),
                username=s.display.get("username"),
                source=s.source,
                status=s.status,
                server_version=s.server_version,
                live_tables=0,
                key_id=s.key_id,
                created_at=s.created_at or datetime.now(UTC),
                updated_at=s.updated_at or datetime.now(UTC),
            )
            for s in sorted(self.core.state.databases.values(), key=lambda s: s.name)
            if (name is None or s.name == name)
            and (after is None or s.name > after)
            and (databases is None or s.name in databases)
        ]
        return views if limit is None else views[:limit]
