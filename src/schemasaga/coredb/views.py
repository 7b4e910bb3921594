"""The read side on PostgreSQL: :class:`~schemasaga.services.views.ReadModels` answered from the read models
and the event store, and the registered URLs every process's connections load."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.connections import RegisteredUrl
from schemasaga.coredb.pool import autocommit_connection
from schemasaga.coredb.transaction import PgStreams
from schemasaga.domain.columns import Column, Index
from schemasaga.domain.errors import InvalidCursor, TableNotFound
from schemasaga.domain.events import stream_name
from schemasaga.domain.table import Table
from schemasaga.eventstore import START, EventNotFound, EventStore, RecordedEvent
from schemasaga.jobs import queries as job_queries
from schemasaga.secrets import SecretBox, SecretsError
from schemasaga.services.repository import fold_table, load_table
from schemasaga.services.views import (
    DatabaseView,
    OperationView,
    StoredIdentity,
    TableListing,
    TableView,
    TrashView,
)
from schemasaga.sql import queries

log = logging.getLogger(__name__)
Q = queries("views")


class PgReadModels:
    def __init__(self, pool: AsyncConnectionPool[Any], *, store: EventStore) -> None:
        self.pool = pool
        self.store = store
        self._streams = PgStreams(store)

    async def _rows(
        self, query: str, params: dict[str, Any] | None = None, *, json_text: bool = False
    ) -> list[dict[str, Any]]:
        async with autocommit_connection(self.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
            if json_text:
                # JSON as PostgreSQL writes it, not parsed: whoever needs its values parses it.
                cur.adapters.register_loader("jsonb", TextLoader)
            await cur.execute(Q[query], params or {})
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    # -- tables ----------------------------------------------------------------------------------

    async def get_table(self, table_id: UUID) -> TableView | None:
        rows = await self._rows("get_table", {"table_id": table_id})
        return _table(rows[0]) if rows else None

    async def get_trash(self, trash_id: UUID) -> TrashView | None:
        rows = await self._rows("get_trash", {"trash_id": trash_id})
        return _trash(rows[0]) if rows else None

    async def list_trash(self, *, database: str | None, databases: Collection[str] | None) -> list[TrashView]:
        params = {"database": database, "databases": None if databases is None else sorted(databases)}
        return [_trash(row) for row in await self._rows("list_trash", params)]

    async def trash_due(self, *, limit: int) -> list[TrashView]:
        return [_trash(row) for row in await self._rows("trash_due", {"limit": limit})]

    async def list_tables(
        self,
        *,
        database: str | None,
        include_deleted: bool,
        include_trashed: bool = False,
        after: UUID | None,
        limit: int,
        databases: Collection[str] | None = None,
        name_prefix: str | None = None,
        status: str | None = None,
    ) -> list[TableView]:
        params = _list_params(
            database, include_deleted, include_trashed, after, limit, databases, name_prefix, status
        )
        return [_table(row) for row in await self._rows("list_tables", params)]

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
        params = _list_params(database, include_deleted, include_trashed, after, limit, databases, None, None)
        return [_listing(row) for row in await self._rows("list_tables", params, json_text=True)]

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
        found: list[Table | TableView] = []
        params: dict[str, Any] = {
            "database": database,
            "databases": None if databases is None else sorted(databases),
            "at": moment,
            "limit": limit,
        }
        cursor = after
        # A candidate may be left out once read (deleted by then, or another name then): read on until
        # the page is full or the candidates run out.
        while len(found) < limit:
            rows = await self._rows("tables_begun_by", {**params, "after": cursor})
            # The streams that moved since, as they were then, in one round trip, each folded.
            moved = [stream_name(r["table_id"]) for r in rows if r["moved_since"]]
            streams = await self.store.read_streams_until(moved, until=moment) if moved else {}
            for row in rows:
                then: Table | TableView | None
                if row["moved_since"]:
                    then = fold_table(row["table_id"], streams.get(stream_name(row["table_id"]), []))
                else:
                    then = _table(row)
                if then is None:  # its first event committed after the candidates were read
                    continue
                live = then.live if isinstance(then, Table) else not then.deleted
                if (include_deleted or live) and then.name.startswith(name_prefix or ""):
                    found.append(then)
                    if len(found) == limit:
                        break
            if len(rows) < limit:
                break
            cursor = rows[-1]["table_id"]
        return found

    async def table_at(self, table_id: UUID, *, version: int | None, moment: datetime | None) -> Table:
        if moment is not None:
            # The last event by then, and the rest of its transaction (see EventStore.read_stream).
            last = await self.store.read_stream(stream_name(table_id), backward=True, limit=1, until=moment)
            if not last or last[0].version is None:
                raise TableNotFound(f"table {table_id} did not exist at {moment.isoformat()}")
            version = last[0].version if version is None else min(version, last[0].version)
        table = await load_table(self._streams, table_id, to_version=version)
        if table is None:
            raise TableNotFound(f"no table with id {table_id}")
        return table

    async def table_events(
        self, table_id: UUID, *, after: int | None = None, limit: int | None = None
    ) -> list[RecordedEvent]:
        # (stream, version) is the primary key of the stream rows: a page is one index range scan.
        first = None if after is None else after + 1
        return await self.store.read_stream(stream_name(table_id), from_version=first, limit=limit)

    async def log_page(self, *, after: UUID | None, limit: int) -> list[RecordedEvent]:
        checkpoint = START
        if after is not None:
            found = await self.store.checkpoint_of(after)
            if found is None:
                raise InvalidCursor(f"after={after}: no event has this id")
            checkpoint = found
        return await self.store.read_committed(after=checkpoint, limit=limit)

    # -- the global log --------------------------------------------------------------------------

    async def recent_events(
        self,
        *,
        before: int | None,
        limit: int,
        event_type: str | None = None,
        correlation_id: str | None = None,
        stream: str | None = None,
    ) -> list[RecordedEvent]:
        to = None if before is None else before - 1
        return await self.store.read_all(
            to_position=to,
            backward=True,
            limit=limit,
            event_types=None if event_type is None else [event_type],
            correlation_id=correlation_id,
            stream=stream,
        )

    async def get_event(self, event_id: UUID) -> RecordedEvent | None:
        try:
            return await self.store.get(event_id)
        except EventNotFound:
            return None

    async def event_streams(self, event_id: UUID) -> list[str]:
        return await self.store.streams_of(event_id)

    async def correlated_events(self, correlation_id: str, *, limit: int) -> list[RecordedEvent]:
        return await self.store.read_all(correlation_id=correlation_id, limit=limit)

    async def tables_of_database(self, database: str) -> list[tuple[UUID, str]]:
        return [
            (row["table_id"], row["name"])
            for row in await self._rows("tables_of_database", {"database": database})
        ]

    async def tables_by_id(self, table_ids: Sequence[UUID]) -> list[TableView]:
        rows = await self._rows("tables_by_id", {"table_ids": list(table_ids)})
        return [_table(row) for row in rows if isinstance(row["columns"], list)]

    # -- operations ------------------------------------------------------------------------------

    async def get_operation(self, operation_id: UUID) -> OperationView | None:
        rows = await self._rows("get_operation", {"operation_id": operation_id})
        return operation_view(rows[0]) if rows else None

    async def list_operations(
        self,
        *,
        table_id: UUID | None,
        status: str | None,
        limit: int,
        databases: Collection[str] | None = None,
        after: UUID | None = None,
    ) -> list[OperationView]:
        after_seq = None
        if after is not None:
            found = await self._rows("operation_seq", {"operation_id": after})
            if not found:
                raise InvalidCursor(f"after={after}: no operation has this id")
            after_seq = found[0]["accepted_seq"]
        params = {
            "table_id": table_id,
            "status": status,
            "limit": limit,
            "databases": None if databases is None else sorted(databases),
            "after_seq": after_seq,
        }
        rows = await self._rows("list_operations", params)
        return [operation_view(row) for row in rows]

    async def unsettled_operations(self) -> list[OperationView]:
        return [operation_view(row) for row in await self._rows("unsettled_operations")]

    async def stuck_operations(self) -> list[OperationView]:
        async with self.pool.connection() as conn:
            return [operation_view(row) for row in await job_queries.stuck_operations(conn)]

    # -- databases -------------------------------------------------------------------------------

    async def list_databases(
        self,
        *,
        name: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        databases: Collection[str] | None = None,
    ) -> list[DatabaseView]:
        params = {
            "name": name,
            "after": after,
            "limit": limit,
            "databases": None if databases is None else sorted(databases),
        }
        return [_database(row) for row in await self._rows("list_databases", params)]

    async def stored_identities(self, *, engine: str) -> list[StoredIdentity]:
        rows = await self._rows("identities", {"engine": engine})
        return [StoredIdentity(row["name"], row["url_encrypted"], row["identity"]) for row in rows]

    async def identity_holder(self, identity: str) -> str | None:
        rows = await self._rows("holding_identity", {"identity": identity})
        return str(rows[0]["name"]) if rows else None


class RegistrySource:
    """The registered databases' URLs, decrypted with this process's key (``RegisteredUrls``)."""

    def __init__(self, *, conninfo: str, pool: AsyncConnectionPool[Any], secrets: SecretBox) -> None:
        self._conninfo = conninfo
        self._pool = pool
        self._secrets = secrets

    def load(self) -> Sequence[RegisteredUrl]:
        # Its own short connection: the pool is async and this runs in a worker thread.
        with psycopg.connect(self._conninfo, connect_timeout=5) as conn:
            rows = conn.execute(Q["registered_urls"]).fetchall()
        return [self._entry(*row) for row in rows]

    async def aload(self) -> Sequence[RegisteredUrl]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(Q["registered_urls"])).fetchall()
        return [self._entry(*row) for row in rows]

    def _entry(self, name: str, engine: str, url_encrypted: str, identity: str | None) -> RegisteredUrl:
        try:
            url: str | None = self._secrets.decrypt(url_encrypted)
        except SecretsError:
            log.warning("database %r: its stored URL cannot be decrypted with this process's key", name)
            url = None
        return RegisteredUrl(name=name, engine=engine, url=url, identity=identity)


def _table(row: dict[str, Any]) -> TableView:
    columns = row["columns"]
    if isinstance(columns, dict):  # written by a process from before migration 0005
        columns = list(columns.values())
    return TableView(
        table_id=row["table_id"],
        database=row["database_name"],
        name=row["name"],
        synced=row["synced"],
        exists=row["exists_"],
        deleted=row["deleted"],
        columns=tuple(
            Column.from_dict(c) for c in (columns.values() if isinstance(columns, dict) else columns)
        ),
        indexes=tuple(Index.from_dict(i) for i in row["indexes"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        trashed=row["trashed"],
        creation_rejected=bool(row.get("creation_rejected")),
    )


def _listing(row: dict[str, Any]) -> TableListing:
    return TableListing(
        table_id=row["table_id"],
        database=row["database_name"],
        name=row["name"],
        synced=row["synced"],
        exists=row["exists_"],
        deleted=row["deleted"],
        trashed=row["trashed"],
        columns_json=row["columns"],
        indexes_json=row["indexes"],
        version=row["version"],
    )


def _trash(row: dict[str, Any]) -> TrashView:
    return TrashView(
        trash_id=row["trash_id"],
        table_id=row["table_id"],
        database=row["database_name"],
        kind=row["kind"],
        table=row["origin_table"],
        column=row["origin_column"],
        physical_name=row["physical_name"],
        status=row["status"],
        trashed_at=row["trashed_at"],
        purge_at=row["purge_at"],
    )


def operation_view(row: dict[str, Any]) -> OperationView:
    return OperationView(
        operation_id=row["operation_id"],
        table_id=row["table_id"],
        kind=row["kind"],
        status=row["status"],
        attempts=row["attempts"],
        steps_done=tuple(row["steps_done"]),
        last_error=row["last_error"],
        detail=row["detail"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        undoes=row.get("undoes"),
        undone_by=row.get("undone_by"),
    )


def _database(row: dict[str, Any]) -> DatabaseView:
    display = row["display"]
    return DatabaseView(
        name=row["name"],
        engine=row["engine"],
        driver=display.get("driver"),
        host=display.get("host"),
        port=display.get("port"),
        database=display.get("database"),
        username=display.get("username"),
        source=row["source"],
        status=row["status"],
        server_version=row["server_version"],
        live_tables=int(row["live_tables"]),
        key_id=row["key_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _list_params(
    database: str | None,
    include_deleted: bool,
    include_trashed: bool,
    after: UUID | None,
    limit: int,
    databases: Collection[str] | None,
    name_prefix: str | None,
    status: str | None,
) -> dict[str, object]:
    """The parameters of the ``list_tables`` query, for both shapes of its rows."""
    return {
        "status": status,
        "database": database,
        "include_deleted": include_deleted,
        "include_trashed": include_trashed,
        "after": after,
        "limit": limit,
        "databases": None if databases is None else sorted(databases),
        "name_prefix": name_prefix or None,
    }
