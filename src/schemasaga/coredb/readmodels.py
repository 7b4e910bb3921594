"""The read models (``rm_tables``, ``rm_operations``, ``rm_databases``): written in the transaction of
the events they follow, rebuildable from the events at any time, and the locks taken on their rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, AsyncCursor
from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from schemasaga.domain import database as db
from schemasaga.domain.errors import DatabaseAlreadyRegistered, NameTaken
from schemasaga.domain.events import (
    EVENT_TYPES,
    SagaAttemptFailed,
    SagaCompensationStarted,
    SagaStepCompleted,
    TableAltered,
    TableChangeConfirmed,
    TableChanged,
    TableChangeRejected,
    TableCreated,
    TableCreationConfirmed,
    TableCreationRejected,
    TableDeleted,
    TableDeletionConfirmed,
    TableDeletionRejected,
    TableEvent,
    TableReconciliationRequested,
    TableSchemaAdopted,
    TableTracked,
    event_from_data,
)
from schemasaga.domain.table import Table
from schemasaga.eventstore import EventStore, LeanEvent, RecordedEvent
from schemasaga.eventstore.jsoncodec import dumps_jsonb
from schemasaga.sql import queries

Q = queries("readmodels")

# One live table per name and database; one registration per physical database.
_LIVE_NAME_INDEX = "rm_tables_live_name_idx"
_IDENTITY_INDEX = "rm_databases_identity_idx"


def _kind(event: TableEvent) -> str:
    match event:
        case TableCreated():
            return "create_table"
        case TableChanged(action="add"):
            return "add_column"
        case TableChanged():
            return "remove_column"
        case TableReconciliationRequested(strategy=strategy):
            return strategy
        case TableAltered(change=change):
            return str(change["kind"])
        case TableTracked():
            return "track_table"
        case _:
            return "delete_table"


def _detail(event: TableEvent) -> dict[str, Any]:
    """What the operation is about, and the plan its saga runs."""
    detail = _about(event)
    match event:
        case (
            TableCreated(plan=plan)
            | TableChanged(plan=plan)
            | TableDeleted(plan=plan)
            | TableAltered(plan=plan)
        ):
            if plan is not None:
                detail["plan"] = plan
    return detail


def _about(event: TableEvent) -> dict[str, Any]:
    match event:
        case TableCreated(name=name, database=database):
            return {"name": name, "database": database}
        case TableChanged(column=column):
            return {"column": column}
        case TableAltered(change=change):
            return {key: value for key, value in change.items() if key != "kind"}
        case TableTracked(name=name, database=database):
            return {"name": name, "database": database}
        case _:
            return {}


def _undoes(event: TableEvent) -> UUID | None:
    match event:
        case TableChanged(undoes=undoes) | TableAltered(undoes=undoes) | TableDeleted(undoes=undoes) if (
            undoes is not None
        ):
            return UUID(undoes)
    return None


async def project_table(
    conn: AsyncConnection[Any], table: Table, recorded: Sequence[RecordedEvent]
) -> list[dict[str, Any]]:
    """Bring the read models up to date with ``table`` after ``recorded`` were appended for it; raises
    :class:`NameTaken` when another table of its database holds its name (the transaction is then
    aborted: the caller rolls it back). Returns the ``rm_operations`` row of each operation that
    ``recorded`` finished, as ``get_operation`` (views.sql) reads it."""
    if not recorded:
        return []
    finishing: list[AsyncCursor[dict[str, Any]]] = []
    try:
        # Pipelined, its statements take one round trip together (a failure is raised as the pipeline
        # ends, here); only the finished operations' rows are read, once it has ended.
        async with conn.pipeline():
            await _project_table(conn, table, recorded, finishing)
        rows = [row for cur in finishing if (row := await cur.fetchone()) is not None]
    except UniqueViolation as exc:
        if exc.diag.constraint_name != _LIVE_NAME_INDEX:
            raise
        raise NameTaken(
            f"a table named {table.name!r} already exists in database {table.database!r} "
            "(a table being deleted keeps its name until its deletion is confirmed)"
        ) from exc
    finally:
        for cur in finishing:
            await cur.close()
    return rows


async def _project_table(
    conn: AsyncConnection[Any],
    table: Table,
    recorded: Sequence[RecordedEvent],
    finishing: list[AsyncCursor[dict[str, Any]]] | None = None,
) -> None:
    at = recorded[-1].created_at
    async with conn.cursor() as cur:
        await cur.execute(
            Q["upsert_table"],
            {
                "table_id": table.table_id,
                "database": table.database,
                "name": table.name,
                "synced": table.synced,
                "exists": table.exists,
                "deleted": not table.live,
                "holds_name": table.holds_name,
                "trashed": table.trashed,
                "columns": Jsonb([c.to_dict() for c in table.schema.columns]),
                "indexes": Jsonb([i.to_dict() for i in table.schema.indexes]),
                "version": table.version,
                "at": at,
            },
        )
        await _project_events(cur, recorded, finishing)
        for trash_id in sorted(table.trash_changed):
            entry = table.trash_entry(trash_id)
            if entry is None:
                continue  # a restore or purge of an entry the table never had: refused when asked
            await cur.execute(
                Q["upsert_trash"],
                {
                    "trash_id": UUID(entry.trash_id),
                    "table_id": table.table_id,
                    "database": table.database,
                    "kind": entry.kind,
                    "origin_table": entry.table,
                    "origin_column": entry.column["name"] if entry.column else None,
                    "physical_name": entry.trash,
                    "status": table.trash_status(entry),
                    "retention_s": entry.retention_s,
                    "at": at,
                },
            )


_OUTCOMES = (
    TableCreationConfirmed,
    TableChangeConfirmed,
    TableDeletionConfirmed,
    TableSchemaAdopted,
    TableCreationRejected,
    TableChangeRejected,
    TableDeletionRejected,
)


async def _project_events(
    cur: Any, recorded: Sequence[RecordedEvent], finishing: list[AsyncCursor[dict[str, Any]]] | None
) -> None:
    """Each event's change to ``rm_operations``, in order; the steps an operation completed one after
    the other are written by one statement, with the outcome that follows them if one does (a saga's
    last record: its step, its verification and its confirmation in one UPDATE instead of three).
    ``finishing``: given, the statements that finish an operation run on cursors of their own, added
    to it, whose row the caller reads."""
    steps: list[str] = []
    of: SagaStepCompleted | None = None
    at: Any = None
    for rec in recorded:
        event = event_from_data(rec.event_type, rec.data)
        if isinstance(event, SagaStepCompleted) and (of is None or event.operation_id == of.operation_id):
            steps.append(event.step)
            of, at = event, rec.created_at
            continue
        if of is not None:
            params = {"operation_id": of.operation_id, "steps": steps, "at": at}
            steps, of = [], None
            if isinstance(event, _OUTCOMES) and event.operation_id == params["operation_id"]:
                status, error = "completed", None
                if isinstance(event, TableCreationRejected | TableChangeRejected | TableDeletionRejected):
                    status, error = "rejected", event.reason
                await _finish_operation(
                    cur,
                    "operation_steps_done_finished",
                    {**params, "at": rec.created_at, "status": status, "error": error},
                    finishing,
                )
                if isinstance(event, TableChangeConfirmed | TableDeletionConfirmed):  # an undo completed
                    await cur.execute(
                        Q["operation_undone"], {"operation_id": event.operation_id, "at": rec.created_at}
                    )
                continue
            await cur.execute(Q["operation_steps_done"], params)
            if isinstance(event, SagaStepCompleted):  # another operation's
                steps, of, at = [event.step], event, rec.created_at
                continue
        await _project_event(cur, event, rec, finishing)
    if of is not None:
        params = {"operation_id": of.operation_id, "steps": steps, "at": at}
        await cur.execute(Q["operation_steps_done"], params)


async def _finish_operation(
    cur: Any, query: str, params: dict[str, Any], finishing: list[AsyncCursor[dict[str, Any]]] | None
) -> None:
    """Run ``query``, which finishes an operation (and returns its row); on a cursor of its own when
    the row is asked for (``finishing``)."""
    if finishing is None:
        await cur.execute(Q[query], params)
        return
    returning: AsyncCursor[dict[str, Any]] = cur.connection.cursor(row_factory=dict_row)
    finishing.append(returning)
    await returning.execute(Q[query], params)


async def _project_event(
    cur: Any, event: TableEvent, rec: RecordedEvent, finishing: list[AsyncCursor[dict[str, Any]]] | None
) -> None:
    op = {"operation_id": event.operation_id, "at": rec.created_at}
    match event:
        case (
            TableCreated()
            | TableChanged()
            | TableDeleted()
            | TableReconciliationRequested()
            | TableAltered()
            | TableTracked()
        ):
            await cur.execute(
                Q["insert_operation"],
                {
                    **op,
                    "table_id": event.table_id,
                    "kind": _kind(event),
                    "detail": Jsonb(_detail(event)),
                    "seq": rec.position,
                    "undoes": _undoes(event),
                },
            )
            if isinstance(event, TableTracked):  # nothing to run: done as it is recorded
                await _finish_operation(
                    cur, "operation_finished", {**op, "status": "completed", "error": None}, finishing
                )
        case SagaStepCompleted(step=step):
            await cur.execute(Q["operation_steps_done"], {**op, "steps": [step]})
        case SagaAttemptFailed(attempt=attempt, error=error, blocked_by=blocked_by):
            await cur.execute(
                Q["operation_attempt_failed"],
                {**op, "attempt": attempt, "error": error, "blocked_by": Jsonb(blocked_by)},
            )
        case SagaCompensationStarted(reason=reason):
            await cur.execute(Q["operation_compensating"], {**op, "reason": reason})
        case (
            TableCreationConfirmed()
            | TableChangeConfirmed()
            | TableDeletionConfirmed()
            | TableSchemaAdopted()
        ):
            await _finish_operation(
                cur, "operation_finished", {**op, "status": "completed", "error": None}, finishing
            )
            if isinstance(event, TableChangeConfirmed | TableDeletionConfirmed):  # an undo completed: what it
                # undid is undone (a deletion undoes a creation)
                await cur.execute(Q["operation_undone"], op)
        case (
            TableCreationRejected(reason=r) | TableChangeRejected(reason=r) | TableDeletionRejected(reason=r)
        ):
            await _finish_operation(
                cur, "operation_finished", {**op, "status": "rejected", "error": r}, finishing
            )


async def project_database(conn: AsyncConnection[Any], state: db.DatabaseState) -> None:
    """Make the row of ``state.name`` match the state (no row once unregistered); raises
    :class:`DatabaseAlreadyRegistered` when another registration holds its identity."""
    if not state.registered:
        await conn.execute(Q["delete_database"], {"name": state.name})
        return
    try:
        await conn.execute(
            Q["upsert_database"],
            {
                "name": state.name,
                "engine": state.engine,
                "url_encrypted": state.url_encrypted,
                "key_id": state.key_id,
                "display": Jsonb(state.display),
                "source": state.source,
                "status": state.status,
                "server_version": state.server_version,
                "version": state.version,
                "created_at": state.created_at,
                "updated_at": state.updated_at,
                "identity": state.identity,
            },
        )
    except UniqueViolation as exc:
        if exc.diag.constraint_name != _IDENTITY_INDEX:
            raise
        raise DatabaseAlreadyRegistered(
            f"the database {state.name!r} connects to is registered already under another name"
        ) from exc


# -- locks on the registry -------------------------------------------------------------------------


async def lock_database(conn: AsyncConnection[Any], name: str, *, exclusive: bool) -> bool:
    query = Q["lock_database" if exclusive else "require_database"]
    return await (await conn.execute(query, {"name": name})).fetchone() is not None


async def name_held(conn: AsyncConnection[Any], database: str, name: str) -> bool:
    row = await (await conn.execute(Q["name_held"], {"database": database, "name": name})).fetchone()
    return bool(row and row[0])


async def live_tables(conn: AsyncConnection[Any], database: str) -> int:
    row = await (await conn.execute(Q["live_tables"], {"name": database})).fetchone()
    return int(row[0]) if row else 0


async def trash_held(conn: AsyncConnection[Any], database: str) -> int:
    row = await (await conn.execute(Q["trash_held"], {"name": database})).fetchone()
    return int(row[0]) if row else 0


async def lock_registered_databases(conn: AsyncConnection[Any]) -> list[str]:
    return [str(r[0]) for r in await (await conn.execute(Q["lock_registered_databases"])).fetchall()]


# -- rebuilding ----------------------------------------------------------------------------------------


async def rebuild(conn: AsyncConnection[Any], store: EventStore) -> dict[str, int]:
    """Rebuild every read model from the events, inside the caller's transaction; the streams read."""
    return {"databases": await _rebuild_databases(conn, store), "tables": await _rebuild_tables(conn, store)}


async def _rebuild_databases(conn: AsyncConnection[Any], store: EventStore) -> int:
    await conn.execute(Q["truncate_databases"])
    streams = [r[0] for r in await (await conn.execute(Q["database_streams"])).fetchall()]
    for stream in streams:
        events = await store.read_stream(stream, conn=conn)
        if events:
            name = events[0].data["name"]
            state = db.fold(name, ((db.event_from_data(e.event_type, e.data), e.created_at) for e in events))
            await project_database(conn, state)
    return len(streams)


async def _rebuild_tables(conn: AsyncConnection[Any], store: EventStore) -> int:
    """Rebuild rm_tables and rm_operations from the event store."""
    await conn.execute(Q["truncate_read_models"])
    streams = [r[0] for r in await (await conn.execute(Q["table_streams"])).fetchall()]
    for stream in streams:
        events = await store.read_stream(stream, conn=conn)
        if not events:
            continue
        table = Table(table_id=UUID(events[0].data["table_id"]))
        # Event by event, as they were projected when appended (the row's timestamps come from them).
        for rec in events:
            table.apply(event_from_data(rec.event_type, rec.data))
            await _project_table(conn, table, [rec])
            table.trash_changed.clear()  # projected
    return len(streams)


# -- the same projection, in memory (the online rebuild) ---------------------------------------------

TABLE_COLUMNS = (
    "table_id",
    "database_name",
    "name",
    "synced",
    "exists_",
    "deleted",
    "columns",
    "indexes",
    "version",
    "created_at",
    "updated_at",
    "holds_name",
    "trashed",
)
OPERATION_COLUMNS = (
    "operation_id",
    "table_id",
    "kind",
    "status",
    "detail",
    "failed_attempts",
    "steps_done",
    "last_error",
    "accepted_seq",
    "created_at",
    "updated_at",
    "finished_at",
    "undoes",
    "undone_by",
)
TRASH_COLUMNS = (
    "trash_id",
    "table_id",
    "database_name",
    "kind",
    "origin_table",
    "origin_column",
    "physical_name",
    "status",
    "trashed_at",
    "purge_at",
    "updated_at",
)
DATABASE_COLUMNS = (
    "name",
    "engine",
    "url_encrypted",
    "key_id",
    "display",
    "source",
    "status",
    "server_version",
    "version",
    "created_at",
    "updated_at",
    "identity",
)


def table_rows(
    events: Sequence[RecordedEvent],
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rm_tables row, the rm_operations rows and the rm_trash rows that projecting a table's events one
    by one (as :func:`project_table` does when they are appended) leaves, computed without the database:
    the statements of ``_project_table`` applied to dictionaries. JSON columns come as JSON text."""
    table = Table(table_id=UUID(events[0].data["table_id"]))
    ops: dict[Any, dict[str, Any]] = {}
    trash: dict[Any, dict[str, Any]] = {}
    for rec in events:
        event = event_from_data(rec.event_type, rec.data)
        table.apply(event)
        _apply_to_operations(ops, event, rec.created_at, rec.position)
        _apply_to_trash(trash, table, rec.created_at)
    return _rows(table, ops, trash, events[0].created_at, events[-1].created_at)


def _rows(
    table: Table, ops: dict[Any, dict[str, Any]], trash: dict[Any, dict[str, Any]], first: Any, last: Any
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    row = (
        table.table_id,
        table.database,
        table.name,
        table.synced,
        table.exists,
        not table.live,
        dumps_jsonb([c.to_dict() for c in table.schema.columns]),
        dumps_jsonb([i.to_dict() for i in table.schema.indexes]),
        table.version,
        first,
        last,
        table.holds_name,
        table.trashed,
    )
    op_rows = operation_rows(ops)
    trash_rows = [tuple(entry[c] for c in TRASH_COLUMNS) for entry in trash.values()]
    return row, op_rows, trash_rows


def operation_rows(ops: dict[Any, dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The rm_operations rows of a fold's operations (JSON columns as JSON text)."""
    # In OPERATION_COLUMNS' order, spelled out (a generator per row costs a tenth of the fast fold).
    return [
        (
            op["operation_id"],
            op["table_id"],
            op["kind"],
            op["status"],
            dumps_jsonb(op["detail"]),
            op["failed_attempts"],
            dumps_jsonb(op["steps_done"]) if op["steps_done"] else "[]",
            op["last_error"],
            op["accepted_seq"],
            op["created_at"],
            op["updated_at"],
            op["finished_at"],
            op["undoes"],
            op["undone_by"],
        )
        for op in ops.values()
    ]


# The saga's bookkeeping: these change only a pending operation's progress (its steps, failed attempts,
# compensation), which no read-model column of the table or its trash depends on. The fast fold updates
# the operation's row from their data and counts them in the version, without the aggregate.
BOOKKEEPING = frozenset({"SagaStepCompleted", "SagaAttemptFailed", "SagaCompensationStarted"})
_EVENT_FIELDS: dict[str, tuple[type[TableEvent], tuple[tuple[str, bool, bool], ...]]] = {}


def _event_fields(event_type: str) -> tuple[type[TableEvent], tuple[tuple[str, bool, bool], ...]]:
    """The event class and its fields as (name, has a default, holds a UUID), as event_from_data reads
    them (computed once per type)."""
    spec = _EVENT_FIELDS.get(event_type)
    if spec is None:
        cls = EVENT_TYPES[event_type]
        spec = _EVENT_FIELDS[event_type] = (
            cls,
            tuple(
                (
                    f.name,
                    f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
                    f.name in ("table_id", "operation_id"),
                )
                for f in dataclasses.fields(cls)
            ),
        )
    return spec


def fast_table_rows(
    events: Sequence[LeanEvent], uuids: dict[str, UUID] | None = None
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What :func:`table_rows` returns, from lean events (``EventStore.read_streams_lean``), faster: the
    saga's bookkeeping events are folded into the operations' rows only (see ``BOOKKEEPING``), the others
    are built as event_from_data builds them (field specs computed once, ids parsed once per batch through
    ``uuids``) and applied to the aggregate; the trash is looked at only once the table has some. Equal to
    :func:`table_rows` (``tests/unit/test_fast_fold.py`` compares them on mixed histories)."""
    memo: dict[str, UUID] = {} if uuids is None else uuids

    def uuid(text: str) -> UUID:
        value = memo.get(text)
        if value is None:
            value = memo[text] = UUID(text)
        return value

    table = Table(table_id=uuid(events[0][2]["table_id"]))
    ops: dict[Any, dict[str, Any]] = {}
    trash: dict[Any, dict[str, Any]] = {}
    for _, event_type, data, at, position in events:
        if event_type in BOOKKEEPING:
            table.version += 1
            fold_bookkeeping(ops.get(uuid(data["operation_id"])), event_type, data, at)
            continue
        cls, fields = _event_fields(event_type)
        kwargs: dict[str, Any] = {}
        for name, optional, is_uuid in fields:
            if name in data:
                kwargs[name] = uuid(data[name]) if is_uuid else data[name]
            elif not optional:
                raise KeyError(name)
        event = cls(**kwargs)
        table.apply(event)
        _apply_to_operations(ops, event, at, position)
        if table.trash:
            _apply_to_trash(trash, table, at)
    return _rows(table, ops, trash, events[0][3], events[-1][3])


def fold_bookkeeping(op: dict[str, Any] | None, event_type: str, data: dict[str, Any], at: Any) -> None:
    """One of the saga's bookkeeping events (``BOOKKEEPING``) on its operation's row (None: an UPDATE of
    no row), from the event's data: what ``_apply_to_operations`` does with the event built."""
    if op is None:
        return
    if event_type == "SagaStepCompleted":
        op["steps_done"] = [*op["steps_done"], data["step"]]
        op["updated_at"] = at
    elif event_type == "SagaAttemptFailed":
        op.update(status="pending", last_error=data["error"], failed_attempts=data["attempt"], updated_at=at)
        op["detail"] = {**op["detail"], "blocked_by": data.get("blocked_by", [])}
    else:
        op["detail"] = {**op["detail"], "compensating": True, "compensation_reason": data["reason"]}
        op["updated_at"] = at


def _apply_to_trash(trash: dict[Any, dict[str, Any]], table: Table, at: Any) -> None:
    """upsert_trash for each of the table's trash entries: times from the event that trashed it, then
    only its status (and updated_at when it changes)."""
    for entry in table.trash:
        key = UUID(entry.trash_id)
        status = table.trash_status(entry)
        row = trash.get(key)
        if row is None:
            trash[key] = {
                "trash_id": key,
                "table_id": table.table_id,
                "database_name": table.database,
                "kind": entry.kind,
                "origin_table": entry.table,
                "origin_column": entry.column["name"] if entry.column else None,
                "physical_name": entry.trash,
                "status": status,
                "trashed_at": at,
                "purge_at": at + timedelta(seconds=entry.retention_s),
                "updated_at": at,
            }
        elif row["status"] != status:
            row.update(status=status, updated_at=at)


def pending_operation(
    operation_id: Any, table_id: Any, kind: str, detail: Any, undoes: Any, at: Any, position: int
) -> dict[str, Any]:
    """The rm_operations row of an operation just accepted (insert_operation's row)."""
    return {
        "operation_id": operation_id,
        "table_id": table_id,
        "kind": kind,
        "status": "pending",
        "detail": detail,
        "failed_attempts": 0,
        "steps_done": [],
        "last_error": None,
        "accepted_seq": position,
        "created_at": at,
        "updated_at": at,
        "finished_at": None,
        "undoes": undoes,
        "undone_by": None,
    }


def _apply_to_operations(ops: dict[Any, dict[str, Any]], event: TableEvent, at: Any, position: int) -> None:
    op = ops.get(event.operation_id)
    match event:
        case (
            TableCreated()
            | TableChanged()
            | TableDeleted()
            | TableReconciliationRequested()
            | TableAltered()
            | TableTracked()
        ):
            if op is None:  # insert_operation: ON CONFLICT DO NOTHING
                op = ops[event.operation_id] = pending_operation(
                    event.operation_id,
                    event.table_id,
                    _kind(event),
                    _detail(event),
                    _undoes(event),
                    at,
                    position,
                )
            if isinstance(event, TableTracked):
                _finish(op, "completed", None, at)
        case _ if op is None:  # an UPDATE of no row
            return
        case SagaStepCompleted(step=step):
            op["steps_done"] = [*op["steps_done"], step]
            op["updated_at"] = at
        case SagaAttemptFailed(attempt=attempt, error=error, blocked_by=blocked_by):
            op.update(status="pending", last_error=error, failed_attempts=attempt, updated_at=at)
            op["detail"] = {**op["detail"], "blocked_by": blocked_by}
        case SagaCompensationStarted(reason=reason):
            op["detail"] = {**op["detail"], "compensating": True, "compensation_reason": reason}
            op["updated_at"] = at
        case (
            TableCreationConfirmed()
            | TableChangeConfirmed()
            | TableDeletionConfirmed()
            | TableSchemaAdopted()
        ):
            _finish(op, "completed", None, at)
            undone = ops.get(op["undoes"])
            if isinstance(event, TableChangeConfirmed | TableDeletionConfirmed) and undone is not None:
                undone.update(undone_by=op["operation_id"], updated_at=at)  # operation_undone
        case (
            TableCreationRejected(reason=r) | TableChangeRejected(reason=r) | TableDeletionRejected(reason=r)
        ):
            _finish(op, "rejected", r, at)


def _finish(op: dict[str, Any], status: str, error: str | None, at: Any) -> None:
    op.update(status=status, updated_at=at, finished_at=at)
    if error is not None:
        op["last_error"] = error


def database_row(events: Sequence[RecordedEvent]) -> tuple[Any, ...] | None:
    """The rm_databases row the database's events leave (None once it is unregistered)."""
    name = events[0].data["name"]
    state = db.fold(name, ((db.event_from_data(e.event_type, e.data), e.created_at) for e in events))
    if not state.registered:
        return None
    return (
        state.name,
        state.engine,
        state.url_encrypted,
        state.key_id,
        dumps_jsonb(state.display),
        state.source,
        state.status,
        state.server_version,
        state.version,
        state.created_at,
        state.updated_at,
        state.identity,
    )
