"""The table commands: each decides on the Table aggregate in one unit of work, which records the events,
updates the read models and, when the change can start now, queues its saga."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from schemasaga.domain.columns import Column
from schemasaga.domain.errors import DatabaseNotFound
from schemasaga.domain.table import Table
from schemasaga.services.ports import Connections
from schemasaga.services.unit_of_work import Session, UnitOfWork


@dataclass(frozen=True, slots=True)
class Accepted:
    table_id: UUID
    operation_id: UUID


Decision = Callable[[Table, UUID], None]
"""What a command decides on the table, given the id of the operation it starts."""


class TableCommands:
    def __init__(self, *, uow: UnitOfWork, connections: Connections) -> None:
        self.uow = uow
        self.connections = connections

    async def create_table(self, *, name: str, database: str, metadata: Mapping[str, Any]) -> Accepted:
        # Reload the registry without blocking the event loop when this process does not know the name.
        await self.connections.ensure(database)
        self.connections.validate_identifier(name, database=database, kind="table")
        operation_id = uuid4()
        table = Table.create(table_id=uuid4(), name=name, database=database, operation_id=operation_id)

        async def create(session: Session) -> None:
            # A shared lock on the registration: a concurrent unregistering waits for this creation (and
            # then sees its live table), and a process whose registry is out of date cannot create a
            # table in a database another process has just unregistered.
            if not await session.lock_database(database, exclusive=False):
                raise DatabaseNotFound(f"no database named {database!r}")
            session.add_table(table)

        await self.uow.run(create, metadata=correlated(metadata, operation_id))
        return Accepted(table.table_id, operation_id)

    async def add_column(self, *, table_id: UUID, column: Column, metadata: Mapping[str, Any]) -> Accepted:
        def decide(table: Table, operation_id: UUID) -> None:
            self.connections.validate_identifier(column.name, database=table.database, kind="column")
            table.add_column(column, operation_id=operation_id)

        return await self._change(table_id, decide, metadata)

    async def remove_column(self, *, table_id: UUID, name: str, metadata: Mapping[str, Any]) -> Accepted:
        return await self._change(table_id, lambda t, op: t.remove_column(name, operation_id=op), metadata)

    async def delete_table(self, *, table_id: UUID, metadata: Mapping[str, Any]) -> Accepted:
        return await self._change(table_id, lambda t, op: t.delete(operation_id=op), metadata)

    async def reconcile(self, *, table_id: UUID, strategy: str, metadata: Mapping[str, Any]) -> Accepted:
        return await self._change(table_id, lambda t, op: t.reconcile(strategy, operation_id=op), metadata)

    async def _change(self, table_id: UUID, decide: Decision, metadata: Mapping[str, Any]) -> Accepted:
        operation_id = uuid4()

        async def change(session: Session) -> None:
            decide(await session.table(table_id), operation_id)

        await self.uow.run(change, metadata=correlated(metadata, operation_id))
        return Accepted(table_id, operation_id)


def correlated(metadata: Mapping[str, Any], operation_id: UUID) -> dict[str, Any]:
    """Every event of one operation shares its correlation id: the operation id."""
    return {**metadata, "correlation_id": str(operation_id)}
