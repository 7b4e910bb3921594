"""The console's rows: tables, columns, events shaped into plain dictionaries for the templates (pure:
no I/O). What is in flight is marked here, from the aggregate's pending operations."""

from __future__ import annotations

import json
from typing import Any

from schemasaga.domain.columns import Column
from schemasaga.domain.table import Table
from schemasaga.eventstore import RecordedEvent


def column_row(column: Column, *, state: str | None) -> dict[str, Any]:
    return {
        "name": column.name,
        "type": column.type.value,
        "nullable": column.nullable,
        "default": None if column.default is None else json.dumps(column.default, ensure_ascii=False),
        "unique": column.unique,
        "primary_key": column.primary_key,
        "state": state,
    }


def confirmed_names(table: Table) -> dict[str, str]:
    """Intended column name -> its confirmed name, for the columns that changes in flight rename."""
    renamed: dict[str, str] = {}
    for op in table.pending:
        for old, new in op.change.column_renames.items():
            renamed[new] = renamed.pop(old, old)
    return renamed


def columns_of(table: Table) -> list[dict[str, Any]]:
    """The intended columns, each marked when a change in flight adds, renames or changes it, then the
    confirmed columns a change in flight removes."""
    confirmed = table.confirmed_columns
    renamed = confirmed_names(table)
    rows = []
    for name, column in table.columns.items():
        was = renamed.get(name, name)
        before = confirmed.get(was)
        state: str | None
        if before is None:
            state = "being added"
        elif was != name:
            state = f"being renamed from {was}"
        else:
            state = None if before == column else "being changed"
        rows.append(column_row(column, state=state))
    kept = {renamed.get(n, n) for n in table.columns}
    rows += [column_row(c, state="being removed") for name, c in confirmed.items() if name not in kept]
    return rows


def indexes_of(table: Table) -> list[dict[str, Any]]:
    confirmed = {i.name: i for i in table.confirmed.indexes}
    intended = {i.name: i for i in table.schema.indexes}
    rows = [
        {
            "name": i.name,
            "columns": ", ".join(i.columns),
            "unique": i.unique,
            "state": None if confirmed.get(name) == i else "being added",
        }
        for name, i in intended.items()
    ]
    rows += [
        {"name": i.name, "columns": ", ".join(i.columns), "unique": i.unique, "state": "being removed"}
        for name, i in confirmed.items()
        if name not in intended
    ]
    return rows


COLUMN_FIELDS = ("type", "nullable", "default", "unique", "primary_key")


def difference(shown: Table, current: Table) -> dict[str, list[Any]]:
    """What changed in the intended columns from the shown version to the current one."""
    then, now = shown.columns, current.columns
    changed = []
    for name in then.keys() & now.keys():
        a, b = then[name].to_dict(), now[name].to_dict()
        fields = [f"{f}: {json.dumps(a[f])} → {json.dumps(b[f])}" for f in COLUMN_FIELDS if a[f] != b[f]]
        if fields:
            changed.append({"name": name, "fields": fields})
    return {
        "added": [n for n in now if n not in then],
        "removed": [n for n in then if n not in now],
        "changed": sorted(changed, key=lambda c: str(c["name"])),
    }


def outcome(event: RecordedEvent) -> str:
    data = event.data
    kind = event.event_type
    if kind.endswith("Rejected"):
        return f"rejected: {data.get('reason', '')}"
    if kind.endswith("Confirmed"):
        return "confirmed"
    if kind == "SagaStepCompleted":
        return f"step {data.get('step', '')} done"
    if kind == "SagaAttemptFailed":
        return f"attempt {data.get('attempt', '')} failed: {data.get('error', '')}"
    if kind == "SagaCompensationStarted":
        return f"compensating: {data.get('reason', '')}"
    if kind == "TableDriftDetected":
        return f"{len(data.get('issues', []))} drift issue(s)"
    return "accepted"


def event_row(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "position": event.position,
        "version": event.version,
        "created_at": event.created_at,
        "actor": event.metadata.get("actor", ""),
        "correlation_id": event.metadata.get("correlation_id"),
        "operation_id": event.data.get("operation_id"),
    }
