"""The read side: what the read models answer, as typed rows, and the queries that answer it.

Commands never read these (they decide on the aggregates, in a unit of work); the API, the CLI, drift and
verify do. ``coredb`` implements :class:`ReadModels` with SQL on the read models the unit of work keeps
up to date; the web layer shapes the rows into its answers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from schemasaga.domain.columns import Column, Index
from schemasaga.domain.table import Table
from schemasaga.eventstore import RecordedEvent


@dataclass(frozen=True, slots=True)
class TableView:
    table_id: UUID
    database: str
    name: str
    synced: bool
    exists: bool
    deleted: bool
    # The intended columns (confirmed plus changes in flight), in the order they were added.
    columns: tuple[Column, ...]
    # The intended indexes, in the order they were added.
    indexes: tuple[Index, ...]
    version: int
    created_at: datetime
    updated_at: datetime
    # Deleted, with its rows in the trash (restorable).
    trashed: bool = False
    # Deleted because its creation was rejected: it never was.
    creation_rejected: bool = False


@dataclass(frozen=True, slots=True)
class TableListing:
    """A table of a long list: a :class:`TableView` whose columns and indexes are left as the JSON text
    the read model holds (a list of ``Column.to_dict``'s, of ``Index.to_dict``'s; the columns of a row
    from before migration 0005 an object by name), unparsed. A page of 100 tables holds some 3,000
    columns: parsed, built as objects, then again as the answer's, they were most of the list's time;
    the answer's writer parses them only for a table it has not written before in that state."""

    table_id: UUID
    database: str
    name: str
    synced: bool
    exists: bool
    deleted: bool
    trashed: bool
    columns_json: str
    indexes_json: str
    version: int


@dataclass(frozen=True, slots=True)
class TrashView:
    """A table or column in the trash (``rm_trash``)."""

    trash_id: UUID
    table_id: UUID
    database: str
    kind: str  # "table" or "column"
    table: str
    column: str | None
    physical_name: str
    status: str
    trashed_at: datetime
    purge_at: datetime


@dataclass(frozen=True, slots=True)
class OperationView:
    operation_id: UUID
    table_id: UUID
    kind: str
    status: str
    attempts: int
    steps_done: tuple[str, ...]
    last_error: str | None
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    # Undo: the operation this one undoes, and the undo that undid this one (once it completed).
    undoes: UUID | None = None
    undone_by: UUID | None = None


@dataclass(frozen=True, slots=True)
class DatabaseView:
    """A registered database as it may be shown: never its URL, nor its password."""

    name: str
    engine: str
    driver: str | None
    host: str | None
    port: int | None
    database: str | None
    username: str | None
    source: str
    status: str
    server_version: str | None
    live_tables: int
    key_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """A registration's stored URL (encrypted) and identity, to tell whether a new one duplicates it."""

    name: str
    url_encrypted: str
    identity: str | None


class ReadModels(Protocol):
    async def get_table(self, table_id: UUID) -> TableView | None: ...

    async def get_trash(self, trash_id: UUID) -> TrashView | None: ...

    async def list_trash(self, *, database: str | None, databases: Collection[str] | None) -> list[TrashView]:
        """What is in the trash now (trashed, restoring or purging), newest first."""
        ...

    async def trash_due(self, *, limit: int) -> list[TrashView]:
        """Trash entries whose retention has ended, oldest first."""
        ...

    async def list_tables(
        self,
        *,
        database: str | None,
        include_deleted: bool,
        after: UUID | None,
        limit: int,
        databases: Collection[str] | None = None,
        name_prefix: str | None = None,
        include_trashed: bool = False,
        status: str | None = None,
    ) -> list[TableView]:
        """Keyset-paged by table id: the tables after ``after``; of ``databases`` only, when given, whose
        name starts with ``name_prefix`` and whose status (``synced``, ``in_flight``, ``deleted``) is
        ``status``."""

    async def list_table_listings(
        self,
        *,
        database: str | None,
        include_deleted: bool,
        after: UUID | None,
        limit: int,
        databases: Collection[str] | None = None,
        include_trashed: bool = False,
    ) -> list[TableListing]:
        """:meth:`list_tables`, each table a :class:`TableListing` (the same tables, in the same order)."""

    async def tables_at(
        self,
        moment: datetime,
        *,
        database: str | None,
        include_deleted: bool,
        after: UUID | None,
        limit: int,
        databases: Collection[str] | None = None,
        name_prefix: str | None = None,
    ) -> list[Table | TableView]:
        """The whole system at a moment, keyset-paged by table id: every table as :meth:`table_at` reads
        it then (whole transactions only), of ``databases`` only when given, whose name then starts with
        ``name_prefix``; without the tables deleted by then unless ``include_deleted``. A table whose
        stream has not moved since is answered as its read model holds it (a :class:`TableView`, the
        same state, without reading its events)."""

    async def table_at(self, table_id: UUID, *, version: int | None, moment: datetime | None) -> Table:
        """The table as it was at a stream version or a moment (time travel): with every event of a
        transaction or none of them. Raises TableNotFound when it had no events then."""

    async def table_events(
        self, table_id: UUID, *, after: int | None = None, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The table's events in version order: those after version ``after``, at most ``limit``."""

    async def log_page(self, *, after: UUID | None, limit: int) -> list[RecordedEvent]:
        """A page of the global log in commit-safe order (transaction, then position), after the event
        ``after``; only events of transactions that can no longer be preceded by a late commit, so a reader
        paging through it while events are appended sees each event once. Raises
        :class:`~schemasaga.domain.errors.InvalidCursor` when ``after`` is no event."""

    async def recent_events(
        self,
        *,
        before: int | None,
        limit: int,
        event_type: str | None = None,
        correlation_id: str | None = None,
        stream: str | None = None,
    ) -> list[RecordedEvent]:
        """The global log newest first: the events positioned before ``before`` (all when None), of that
        type, correlation id and stream only, when given."""

    async def get_event(self, event_id: UUID) -> RecordedEvent | None: ...

    async def event_streams(self, event_id: UUID) -> list[str]:
        """The streams the event belongs to, in the order it joined them."""

    async def correlated_events(self, correlation_id: str, *, limit: int) -> list[RecordedEvent]:
        """The events whose metadata carries this correlation id, oldest first."""

    async def get_operation(self, operation_id: UUID) -> OperationView | None: ...

    async def list_operations(
        self,
        *,
        table_id: UUID | None,
        status: str | None,
        limit: int,
        databases: Collection[str] | None = None,
        after: UUID | None = None,
    ) -> list[OperationView]:
        """Newest first; of the tables of ``databases`` only, when given; keyset-paged: those accepted
        before the operation ``after`` (:class:`~schemasaga.domain.errors.InvalidCursor` when it is none)."""

    async def unsettled_operations(self) -> list[OperationView]:
        """Operations pending or running, in acceptance order."""

    async def stuck_operations(self) -> list[OperationView]:
        """Unfinished operations whose table has no job waiting or running: nothing would finish them."""

    async def tables_of_database(self, database: str) -> list[tuple[UUID, str]]:
        """Id and name of every table of the database that was ever created there or is being created."""

    async def tables_by_id(self, table_ids: Sequence[UUID]) -> list[TableView]:
        """The tables of ``table_ids`` that have a row, in no particular order (``creation_rejected`` is
        not read: always false). A row written before migration 0005 (its columns an object, their order
        lost) is left out."""

    async def list_databases(
        self,
        *,
        name: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        databases: Collection[str] | None = None,
    ) -> list[DatabaseView]:
        """By name, keyset-paged (named after ``after``, at most ``limit``); of ``databases`` only, when
        given."""

    async def stored_identities(self, *, engine: str) -> list[StoredIdentity]: ...

    async def identity_holder(self, identity: str) -> str | None:
        """The registered database whose stored identity is ``identity``."""
