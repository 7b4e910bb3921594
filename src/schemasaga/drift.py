"""Drift: where a BYODB's physical schema no longer matches the confirmed metadata.

Someone changed the database behind the service's back (the most reported pain of tools like this).
A scan compares each settled table's confirmed columns with the live schema and lists the tables in
the database that schemasaga does not manage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.byodb.adapter import ByodbAdapter, LiveTable
from schemasaga.byodb.errors import ByodbError, PermanentByodbError
from schemasaga.catalog import DatabaseCatalog
from schemasaga.domain.columns import Column
from schemasaga.domain.errors import DomainError
from schemasaga.domain.table import Table
from schemasaga.projections.tables import project
from schemasaga.repository import TableRepository
from schemasaga.services import update_table
from schemasaga.sql import queries

log = logging.getLogger(__name__)
Q = queries("drift")


class DatabaseUnavailable(DomainError):
    """The database could not be read (unreachable, refusing): nothing can be said of its drift."""

    code = "database_unavailable"
    status = 503


def compare(confirmed: Iterable[Column], live: LiveTable | None) -> list[dict[str, Any]]:
    """The differences between the confirmed columns and the live table, as JSON-able issues."""
    if live is None:
        return [{"issue": "missing_table"}]
    issues: list[dict[str, Any]] = []
    # Each confirmed column takes the live column of its exact name, else one that differs only in
    # case (a rename behind our back on PostgreSQL, where "age" and "Age" are two columns).
    unmatched = list(live.columns)
    for column in confirmed:
        found = next((c for c in unmatched if c.name == column.name), None) or next(
            (c for c in unmatched if c.name.lower() == column.name.lower()), None
        )
        if found is None:
            issues.append({"issue": "missing_column", "column": column.name})
            continue
        unmatched.remove(found)
        if found.name != column.name:
            issues.append({"issue": "name_mismatch", "column": column.name, "actual": found.name})
        if found.type != column.type:
            issues.append(
                {
                    "issue": "type_mismatch",
                    "column": column.name,
                    "expected": column.type.value,
                    "actual": found.type.value if found.type else found.raw_type,
                }
            )
        if found.nullable != column.nullable:
            issues.append(
                {
                    "issue": "nullability_mismatch",
                    "column": column.name,
                    "expected": column.nullable,
                    "actual": found.nullable,
                }
            )
        if found.primary_key != column.primary_key:
            issues.append(
                {
                    "issue": "primary_key_mismatch",
                    "column": column.name,
                    "expected": column.primary_key,
                    "actual": found.primary_key,
                }
            )
    for found in unmatched:
        issues.append({"issue": "extra_column", "column": found.name, "actual": found.type or found.raw_type})
    return issues


@dataclass
class TableDrift:
    table_id: UUID
    name: str
    issues: list[dict[str, Any]]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "checked": self.checked,
            "in_flight": self.in_flight,
            "clean": self.clean,
            "tables": [
                {"table_id": str(t.table_id), "name": t.name, "issues": t.issues} for t in self.drifted
            ],
            "unmanaged_tables": self.unmanaged_tables,
        }


class DriftDetector:
    def __init__(
        self, *, pool: AsyncConnectionPool[Any], repository: TableRepository, catalog: DatabaseCatalog
    ) -> None:
        self.pool = pool
        self.repository = repository
        self.catalog = catalog

    async def scan(self, database: str, *, record: bool = False) -> DriftReport:
        """Compare every settled table of ``database``; with ``record``, append TableDriftDetected
        events for tables whose drift changed since the last scan."""
        try:
            return await self._scan(database, record=record)
        except ByodbError as exc:
            raise DatabaseUnavailable(f"database {database!r} could not be read: {exc}") from exc

    async def _scan(self, database: str, *, record: bool) -> DriftReport:
        adapter = await asyncio.to_thread(self.catalog.adapter, database)
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q["tables_of_database"], {"database": database})
            rows = await cur.fetchall()
        report = DriftReport(database=database)
        managed: set[str] = set()
        scan_id = uuid4()
        for row in rows:
            managed.add(row["name"].lower())
            table = await self.repository.load(row["table_id"])
            if not table.exists:
                continue
            if not table.synced:
                report.in_flight += 1
                continue
            report.checked += 1
            issues = await asyncio.to_thread(_check, adapter, table)
            if issues:
                report.drifted.append(TableDrift(table.table_id, table.name, issues))
            if record and issues != table.drift:
                await self._record(table.table_id, issues, scan_id)
        live_names = await asyncio.to_thread(adapter.list_tables)
        report.unmanaged_tables = sorted(n for n in live_names if n.lower() not in managed)
        return report

    async def _record(self, table_id: UUID, issues: list[dict[str, Any]], scan_id: UUID) -> None:
        def decide(table: Table) -> None:
            if table.synced:
                table.record_drift(issues, scan_id=scan_id)

        async def commit(conn: Any, table: Table) -> None:
            recorded = await self.repository.save(
                table, conn=conn, metadata={"correlation_id": str(scan_id), "actor": "drift-scan"}
            )
            await project(conn, table, recorded)

        await update_table(self.pool, self.repository, table_id, decide, commit)


def _check(adapter: ByodbAdapter, table: Table) -> list[dict[str, Any]]:
    try:
        live = adapter.inspect_table(table.name)
    except PermanentByodbError as exc:
        # This table cannot be read (replaced by a view, no privilege...): that is its drift; the
        # other tables are still checked. A transient failure stops the scan (DatabaseUnavailable).
        return [{"issue": "unreadable", "detail": str(exc)}]
    return compare(table.confirmed_columns.values(), live)


async def periodic_scan(detector: DriftDetector, catalog: DatabaseCatalog, *, every: float) -> None:
    """Runs in the worker while ``drift_scan_interval`` > 0; records drift as it appears."""
    while True:
        await asyncio.sleep(every)
        for database in catalog.names():
            try:
                report = await detector.scan(database, record=True)
            except Exception:
                log.exception("drift scan of database %r failed", database)
                continue
            if report.drifted:
                log.warning("drift in database %r: %d table(s)", database, len(report.drifted))
