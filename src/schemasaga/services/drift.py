"""Drift: where a BYODB's physical schema no longer matches the confirmed metadata.

Someone changed the database behind the service's back (the most reported pain of tools like this).
A scan compares each settled table's confirmed columns with the live schema, by the one schema diff,
and lists the tables in the database that schemasaga does not manage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from schemasaga.byodb.errors import ByodbError, PermanentByodbError
from schemasaga.domain.changes import is_trash_name
from schemasaga.domain.columns import TableSchema
from schemasaga.domain.errors import DatabaseUnavailable
from schemasaga.domain.schema import Difference, DifferenceKind, diff
from schemasaga.domain.table import Table
from schemasaga.services.ports import Connections, SchemaAdapter
from schemasaga.services.unit_of_work import Session, UnitOfWork
from schemasaga.services.views import ReadModels, TableView

log = logging.getLogger(__name__)

# Tables loaded together from the core database and inspected in one step of the BYODB.
_BATCH = 200


@dataclass
class TableDrift:
    table_id: UUID
    name: str
    differences: list[Difference]

    @property
    def issues(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.differences]


@dataclass
class DriftReport:
    database: str
    checked: int = 0
    in_flight: int = 0
    drifted: list[TableDrift] = field(default_factory=list)
    unmanaged_tables: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.drifted


class DriftDetector:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        reads: ReadModels,
        connections: Connections,
        on_scan: Callable[[str, int], None] | None = None,
    ) -> None:
        self.uow = uow
        self.reads = reads
        self.connections = connections
        # Told of each finished scan: the database and how many tables drifted (metrics).
        self.on_scan = on_scan

    async def scan(self, database: str, *, record: bool = False, from_events: bool = False) -> DriftReport:
        """Compare every settled table of ``database``; with ``record``, append TableDriftDetected
        events for tables whose drift changed since the last scan. The tables' confirmed schemas are read
        from the read models, or folded from their events with ``from_events`` or ``record`` (the same
        report, slower)."""
        try:
            report = await self._scan(database, record=record, from_events=from_events or record)
        except ByodbError as exc:
            raise DatabaseUnavailable(f"database {database!r} could not be read: {exc}") from exc
        if self.on_scan is not None:
            self.on_scan(database, len(report.drifted))
        return report

    async def _scan(self, database: str, *, record: bool, from_events: bool) -> DriftReport:
        adapter = await asyncio.to_thread(self.connections.adapter, database)
        report = DriftReport(database=database)
        managed: set[str] = set()
        scan_id = uuid4()
        everything = await self.reads.tables_of_database(database)
        # In batches: the tables of a batch are read from the core database together and inspected in
        # one step of the BYODB (one connection and transaction), not one by one.
        for start in range(0, len(everything), _BATCH):
            batch = everything[start : start + _BATCH]
            managed.update(name.lower() for _, name in batch)
            # Recording compares with the drift each table recorded last, which only its events hold.
            found = await (self._aggregates(batch) if from_events else self._read_models(batch))
            settled = []
            for table in found:
                if not table.exists:
                    continue
                if not table.synced:
                    report.in_flight += 1
                    continue
                settled.append(table)
            report.checked += len(settled)
            checked = await adapter.run(check_many, adapter, settled) if settled else []
            for table, differences in zip(settled, checked, strict=True):
                if differences:
                    report.drifted.append(TableDrift(table.table_id, table.name, differences))
                issues = [d.to_dict() for d in differences]
                if record and issues != table.drift:
                    await self._record(table.table_id, issues, scan_id)
        live_names = await adapter.run(adapter.list_tables)
        # The trash's tables are schemasaga's own (deleted tables, removed columns' values).
        report.unmanaged_tables = sorted(
            n for n in live_names if n.lower() not in managed and not is_trash_name(n)
        )
        return report

    async def _aggregates(self, batch: Sequence[tuple[UUID, str]]) -> list[Scanned]:
        """The tables of ``batch`` folded from their events (two queries for the batch), in its order."""
        loaded = await self.uow.load_tables([table_id for table_id, _ in batch])
        return [Scanned.of_table(loaded[t]) for t, _ in batch if t in loaded]

    async def _read_models(self, batch: Sequence[tuple[UUID, str]]) -> list[Scanned]:
        """The tables of ``batch`` as their read model rows hold them (one query by primary key), in its
        order: a settled table's row holds its confirmed schema, so no event is read or folded, and the
        cost of a batch does not grow with the events in the core database. A table without a usable row
        is folded from its events."""
        rows = {view.table_id: view for view in await self.reads.tables_by_id([t for t, _ in batch])}
        missing = [(t, name) for t, name in batch if t not in rows]
        folded = {s.table_id: s for s in await self._aggregates(missing)} if missing else {}
        out = []
        for table_id, _ in batch:
            if (view := rows.get(table_id)) is not None:
                out.append(Scanned.of_view(view))
            elif (scanned := folded.get(table_id)) is not None:
                out.append(scanned)
        return out

    async def _record(self, table_id: UUID, issues: list[dict[str, Any]], scan_id: UUID) -> None:
        async def record(session: Session) -> None:
            table = await session.table(table_id)
            if table.synced:
                table.record_drift(issues, scan_id=scan_id)

        await self.uow.run(record, metadata={"correlation_id": str(scan_id), "actor": "drift-scan"})


@dataclass(frozen=True, slots=True)
class Scanned:
    """What a scan needs of a table: whether it exists and is settled, and its confirmed schema."""

    table_id: UUID
    name: str
    exists: bool
    synced: bool
    # The name the table has in its database, and its schema as confirmed by finished sagas.
    physical_name: str
    confirmed: TableSchema
    # The differences the last recorded scan found (only known when read from the events).
    drift: list[dict[str, Any]] | None = None

    @classmethod
    def of_table(cls, table: Table) -> Scanned:
        return cls(
            table_id=table.table_id,
            name=table.name,
            exists=table.exists,
            synced=table.synced,
            physical_name=table.physical_name,
            confirmed=table.confirmed,
            drift=table.drift,
        )

    @classmethod
    def of_view(cls, view: TableView) -> Scanned:
        """A read model row: a settled table's intended schema is its confirmed one (no change is in
        flight), and its intended name its physical one."""
        return cls(
            table_id=view.table_id,
            name=view.name,
            exists=view.exists,
            synced=view.synced,
            physical_name=view.name,
            confirmed=TableSchema(view.name, view.columns, view.indexes),
        )


def check_many(adapter: SchemaAdapter, tables: Sequence[Scanned]) -> list[list[Difference]]:
    """:func:`check` of each table, their live schemas read in one step (blocking); one by one when the
    step fails as a whole for a permanent reason (so that one unreadable table spoils only its own)."""
    try:
        found = adapter.inspect_tables([t.physical_name for t in tables])
    except PermanentByodbError:
        return [check(adapter, t) for t in tables]
    return [
        [Difference(DifferenceKind.UNREADABLE, detail=str(live))]
        if isinstance(live, PermanentByodbError)
        else diff(t.confirmed, live)
        for t, live in zip(tables, found, strict=True)
    ]


def check(adapter: SchemaAdapter, table: Scanned) -> list[Difference]:
    """How the live table differs from the table's confirmed metadata (blocking)."""
    try:
        live = adapter.inspect_table(table.physical_name)
    except PermanentByodbError as exc:
        # This table cannot be read (replaced by a view, no privilege...): that is its drift; the
        # other tables are still checked. A transient failure stops the scan (DatabaseUnavailable).
        return [Difference(DifferenceKind.UNREADABLE, detail=str(exc))]
    return diff(table.confirmed, live)


async def periodic_scan(detector: DriftDetector, *, every: float) -> None:
    """Runs in the worker while ``drift_scan_interval`` > 0; records drift as it appears."""
    while True:
        await asyncio.sleep(every)
        for database in detector.connections.names():
            try:
                report = await detector.scan(database, record=True)
            except Exception:
                log.exception("drift scan of database %r failed", database)
                continue
            if report.drifted:
                log.warning("drift in database %r: %d table(s)", database, len(report.drifted))
