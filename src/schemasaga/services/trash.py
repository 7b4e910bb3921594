"""The trash commands (issue 9): restore or purge what a deletion or a column removal put in the trash.

A deleted table is renamed to a reserved trash name (``_ssg_trash_<16 hex>``) and a removed column's values
are copied, keyed by the primary key, into a trash table of that kind; each is a trash entry of its table,
whose id is the id of the operation that trashed it. Restoring and purging are operations of that table
like any other change: decided on the Table aggregate in one unit of work, run by a saga whose steps are
inspect-first (see ``services/sagas/steps.py``). Undo calls :meth:`TrashCommands.restore` and
:meth:`TrashCommands.purge`; each returns the operation it started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID, uuid4

from schemasaga.byodb.errors import ByodbError
from schemasaga.domain.changes import Change, PurgeTrash, RestoreColumn, RestoreTable, is_trash_name
from schemasaga.domain.columns import Column
from schemasaga.domain.errors import (
    ColumnExists,
    DatabaseNotFound,
    DomainError,
    InvalidName,
    NameTaken,
    TrashNotFound,
    TrashPurged,
)
from schemasaga.domain.table import Table, TrashEntry
from schemasaga.services.ports import Connections
from schemasaga.services.tables import Accepted, correlated
from schemasaga.services.unit_of_work import Session, UnitOfWork
from schemasaga.services.views import ReadModels, TrashView

log = logging.getLogger(__name__)

ACTOR = {"actor": "trash-retention"}


@dataclass(frozen=True, slots=True)
class TrashItem:
    """A trash entry as the API shows it: the read model's row and the rows its trash table holds now
    (``None``: its database could not be asked)."""

    view: TrashView
    rows: int | None


class TrashCommands:
    def __init__(self, *, uow: UnitOfWork, connections: Connections, reads: ReadModels) -> None:
        self.uow = uow
        self.connections = connections
        self.reads = reads

    # -- reading -----------------------------------------------------------------------------------

    async def entry(self, trash_id: UUID) -> TrashView:
        view = await self.reads.get_trash(trash_id)
        if view is None:
            raise TrashNotFound(f"no trash entry {trash_id}")
        return view

    async def with_rows(self, views: list[TrashView]) -> list[TrashItem]:
        """The entries with the rows each trash table holds (one look per entry, best effort)."""
        return list(await asyncio.gather(*(self._rows(v) for v in views)))

    async def _rows(self, view: TrashView) -> TrashItem:
        try:
            adapter = await asyncio.to_thread(self.connections.adapter, view.database)
            rows = await adapter.run(adapter.count_rows, view.physical_name)
        except (ByodbError, DomainError) as exc:
            log.info("rows of trash entry %s not counted: %s", view.trash_id, exc)
            rows = None
        return TrashItem(view, rows)

    # -- commands ----------------------------------------------------------------------------------

    async def restore(
        self, *, trash_id: UUID, metadata: Mapping[str, Any], name: str | None = None
    ) -> Accepted:
        """Bring a trashed table (under its name, or ``name``) or column back with its rows: 410 when it
        was purged, ``name_taken`` when the name is in use (in the metadata or in the database)."""
        view = await self._open(trash_id)
        table = await self.uow.load_table(view.table_id)
        entry = _entry(table, trash_id)
        database = table.database
        await self.connections.ensure(database)
        change: Change
        if entry.kind == "table":
            new_name = name if name is not None else entry.table
            self._check_name(new_name, database=database, kind="table")
            adapter = await asyncio.to_thread(self.connections.adapter, database)
            live = await adapter.run(adapter.inspect_table, new_name)
            if live is not None:
                raise NameTaken(
                    f"database {database!r} has a table {live.name!r} already: restore under another name"
                )
            change = RestoreTable(entry.trash_id, entry.trash, new_name)
        else:
            assert entry.column is not None
            column = Column.from_dict(entry.column)
            if name is not None:
                self._check_name(name, database=database, kind="column")
                column = replace(column, name=name)
            key = tuple(Column.from_dict(k) for k in entry.key)
            change = RestoreColumn(entry.trash_id, entry.trash, column, entry.column["name"], key)
        try:
            return await self._accept(table.table_id, database, change, metadata)
        except ColumnExists as exc:
            raise NameTaken(f"{exc}: restore the column under another name") from None

    async def purge(self, *, trash_id: UUID, metadata: Mapping[str, Any]) -> Accepted:
        """Drop a trash entry's data for good (410 when it is gone already)."""
        view = await self._open(trash_id)
        table = await self.uow.load_table(view.table_id)
        entry = _entry(table, trash_id)
        return await self._accept(
            table.table_id, table.database, PurgeTrash(entry.trash_id, entry.trash), metadata
        )

    async def purge_due(self, *, limit: int = 100) -> list[Accepted]:
        """Start the purge of every entry whose retention has ended (those with an operation in flight
        are left to the next round)."""
        started = []
        for view in await self.reads.trash_due(limit=limit):
            try:
                started.append(await self.purge(trash_id=view.trash_id, metadata=ACTOR))
            except DomainError as exc:
                log.info("trash entry %s not purged now: %s", view.trash_id, exc)
        return started

    async def _open(self, trash_id: UUID) -> TrashView:
        view = await self.entry(trash_id)
        if view.status in ("purged", "restored"):
            raise TrashPurged(f"trash entry {trash_id} was {view.status}: its data is no longer in the trash")
        return view

    def _check_name(self, name: str, *, database: str, kind: str) -> None:
        self.connections.validate_identifier(name, database=database, kind=kind)
        if is_trash_name(name):
            raise InvalidName(f"{kind} name {name!r} is reserved for the trash")

    async def _accept(
        self, table_id: UUID, database: str, change: Change, metadata: Mapping[str, Any]
    ) -> Accepted:
        operation_id = uuid4()

        async def decide(session: Session) -> None:
            if not await session.lock_database(database, exclusive=False):
                raise DatabaseNotFound(f"no database named {database!r}")
            (await session.table(table_id)).accept(change, operation_id=operation_id)

        await self.uow.run(decide, metadata=correlated(metadata, operation_id))
        return Accepted(table_id, operation_id)


def _entry(table: Table, trash_id: UUID) -> TrashEntry:
    entry = table.trash_entry(str(trash_id))
    if entry is None:
        raise TrashNotFound(f"no trash entry {trash_id}")
    return entry


async def periodic_purge(trash: TrashCommands, *, every: float) -> None:
    """Runs in the worker: purges (each by its own saga) what is due."""
    while True:
        await asyncio.sleep(every)
        try:
            started = await trash.purge_due()
        except Exception:
            log.exception("the trash's purge round failed")
            continue
        if started:
            log.info(
                "purging %d trash entr%s whose retention ended",
                len(started),
                "y" if len(started) == 1 else "ies",
            )
