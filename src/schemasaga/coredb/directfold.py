"""The read-model rows of a table's lean events folded directly, without the Table aggregate, for the
histories most tables have: created, columns added, each operation confirmed or rejected, with the
saga's bookkeeping in between. Anything else (a removal, a deletion, an index, a rename, drift, a
reconciliation, a tracked table, an event out of the usual order) makes the whole stream go through
:func:`~schemasaga.coredb.readmodels.fast_table_rows`, which applies the aggregate.

The rows are those of :func:`~schemasaga.coredb.readmodels.table_rows` (the reference): what the
aggregate decides for these events is restated here on plain values (the intended schema is the
confirmed one with the pending changes applied in order, an addition skipped when its column is there
already or is a primary key; a confirmation moves its operation's schema into the confirmed one). A
case the restatement does not cover exactly falls back, it does not guess: a confirmation of an
operation that is not the head, an addition confirmed onto a column that is there, an operation id met
twice. ``tests/unit/test_direct_fold.py`` checks the rows against the reference on random histories
made by the aggregate's own commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from schemasaga.coredb.readmodels import (
    BOOKKEEPING,
    fast_table_rows,
    fold_bookkeeping,
    operation_rows,
    pending_operation,
)
from schemasaga.domain.columns import Column, Index
from schemasaga.eventstore import LeanEvent
from schemasaga.eventstore.jsoncodec import dumps_jsonb

Rows = tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]


class _Unsupported(Exception):
    """The history leaves the cases this fold restates: the aggregate folds it."""


def table_rows(events: Sequence[LeanEvent], uuids: dict[str, UUID] | None = None) -> Rows:
    """What :func:`~schemasaga.coredb.readmodels.table_rows` returns for the table's lean events
    (``uuids``: ids already parsed, shared by a batch)."""
    memo: dict[str, UUID] = {} if uuids is None else uuids
    try:
        return _direct(events, memo)
    except (_Unsupported, LookupError, ValueError, TypeError, AttributeError):
        # Anything odd, malformed data included: the aggregate's fold gives the rows, or the error.
        return fast_table_rows(events, memo)


def _direct(events: Sequence[LeanEvent], memo: dict[str, UUID]) -> Rows:
    def uuid(text: str) -> UUID:
        value = memo.get(text)
        if value is None:
            value = memo[text] = UUID(text)
        return value

    if events[0][1] != "TableCreated":
        raise _Unsupported
    first = events[0][2]
    table_id = uuid(first["table_id"])
    database = first["database"]
    name = ""
    # The confirmed schema: name, columns and indexes as their to_dict() (normal_dict) gives them.
    confirmed_name = ""
    confirmed_columns: list[dict[str, Any]] = []
    confirmed_indexes: list[dict[str, Any]] = []
    confirmed_names: set[str] = set()  # its columns' names, lowered (names are unique regardless of case)
    # The operations in flight, in acceptance order: (id, "create", (name, columns, indexes)) or
    # (id, "add", column); a creation can only be the first.
    pending: list[tuple[UUID, str, Any]] = []
    exists = creation_rejected = False
    ops: dict[Any, dict[str, Any]] = {}
    version = -1
    for _, event_type, data, at, position in events:
        version += 1
        if event_type in BOOKKEEPING:
            fold_bookkeeping(ops.get(uuid(data["operation_id"])), event_type, data, at)
            continue
        op_id = uuid(data["operation_id"])
        if event_type == "TableChanged" or event_type == "TableCreated":
            if op_id in ops:  # insert_operation would keep the first row: rare, left to the aggregate
                raise _Unsupported
            plan = data.get("plan")
            if event_type == "TableCreated":
                if version:
                    raise _Unsupported
                database = data["database"]
                schema = (
                    data["name"],
                    [Column.normal_dict(c) for c in data["columns"]],
                    [Index.normal_dict(i) for i in data.get("indexes", [])],
                )
                pending.append((op_id, "create", schema))
                kind, detail, undoes = "create_table", {"name": data["name"], "database": database}, None
            else:
                if data["action"] != "add":
                    raise _Unsupported
                pending.append((op_id, "add", Column.normal_dict(data["column"])))
                kind, detail = "add_column", {"column": data["column"]}
                undone = data.get("undoes")
                undoes = UUID(undone) if undone is not None else None
            if plan is not None:
                detail["plan"] = plan
            ops[op_id] = pending_operation(op_id, uuid(data["table_id"]), kind, detail, undoes, at, position)
        elif event_type == "TableCreationConfirmed" or event_type == "TableChangeConfirmed":
            if not pending or pending[0][0] != op_id:
                raise _Unsupported
            _, kind, change = pending[0]
            if event_type == "TableCreationConfirmed":
                if kind != "create":
                    raise _Unsupported
                confirmed_name, columns, indexes = change
                confirmed_columns, confirmed_indexes = list(columns), list(indexes)
                confirmed_names = {c["name"].lower() for c in columns}
                exists = True
            else:
                lowered = change["name"].lower() if kind == "add" else ""
                if kind != "add" or change["primary_key"] or lowered in confirmed_names:
                    raise _Unsupported  # the aggregate refuses it (its premise does not hold)
                confirmed_columns.append(change)
                confirmed_names.add(lowered)
            del pending[0]
            op = ops[op_id]
            op.update(status="completed", updated_at=at, finished_at=at)
            if event_type == "TableChangeConfirmed":
                undone_op = ops.get(op["undoes"])
                if undone_op is not None:  # operation_undone
                    undone_op.update(undone_by=op_id, updated_at=at)
        elif event_type == "TableCreationRejected" or event_type == "TableChangeRejected":
            at_ = next((i for i, p in enumerate(pending) if p[0] == op_id), None)
            if at_ is None:
                raise _Unsupported
            del pending[at_]
            reason = data["reason"]
            if event_type == "TableCreationRejected":
                exists, creation_rejected = False, True
            op = ops[op_id]
            op.update(status="rejected", updated_at=at, finished_at=at)
            if reason is not None:
                op["last_error"] = reason
        else:
            raise _Unsupported
        # The aggregate's name: the intended schema's, else the one it had. Only a creation in flight
        # (the head, when there is one) gives the intended schema another name than the confirmed one.
        intended = pending[0][2][0] if pending and pending[0][1] == "create" else confirmed_name
        name = intended or name
    columns, indexes = _intended(confirmed_columns, confirmed_indexes, pending)
    row = (
        table_id,
        database,
        name,
        not pending,  # synced
        exists,
        creation_rejected,  # deleted: no longer live (no deletion in these histories)
        dumps_jsonb(columns),
        dumps_jsonb(indexes),
        version,
        events[0][3],
        events[-1][3],
        not creation_rejected,  # holds_name
        False,  # trashed
    )
    return row, operation_rows(ops), []


def _intended(
    columns: list[dict[str, Any]], indexes: list[dict[str, Any]], pending: list[tuple[UUID, str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The confirmed schema with the pending changes applied in order (Table.schema): a creation
    gives its schema, an addition adds its column unless it does not fit (skipped, as the aggregate
    skips a change whose premise is gone)."""
    names: set[str] | None = None
    for _, kind, change in pending:
        if kind == "create":
            _, columns, indexes = change
            names = None
            continue
        if names is None:
            names = {c["name"].lower() for c in columns}
        lowered = change["name"].lower()
        if lowered in names or change["primary_key"]:
            continue
        columns = [*columns, change]
        names.add(lowered)
    return columns, indexes
