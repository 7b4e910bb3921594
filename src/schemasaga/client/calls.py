"""What each method of the clients asks: the HTTP request and how its answer is read, shared by the sync
and the async client (which only send them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import httpx
from pydantic import TypeAdapter

from schemasaga.api.models import (
    AcceptedOut,
    CheckOut,
    ColumnSpec,
    DatabaseList,
    DatabaseOut,
    DeliveryList,
    DriftReportOut,
    EventOut,
    IndexSpec,
    NewWebhookOut,
    OkOut,
    OperationOut,
    TableOut,
    TablePage,
    TrashOut,
    WebhookList,
    WebhookOut,
)

T = TypeVar("T")

FINISHED = ("completed", "rejected")
LONGEST_WAIT = 30.0  # the service's ?wait= limit


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # A change: sent with an Idempotency-Key (one per call, kept across its retries).
    write: bool = False
    idempotency_key: str | None = None


def model(cls: type[T]) -> Callable[[httpx.Response], T]:
    adapter = TypeAdapter(cls)
    return lambda response: adapter.validate_json(response.content)


def _params(**values: Any) -> dict[str, Any]:
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items() if v is not None
    }


def _if_match(version: int | None) -> dict[str, str]:
    return {} if version is None else {"If-Match": f'"{version}"'}


def _spec(value: ColumnSpec | IndexSpec | Mapping[str, Any]) -> Any:
    if isinstance(value, ColumnSpec | IndexSpec):
        return value.model_dump(mode="json", exclude_unset=True)
    return dict(value)


def _change(
    method: str, path: str, *, json: Any = None, key: str | None, if_match: int | None = None
) -> Call[AcceptedOut]:
    return Call(
        method,
        path,
        model(AcceptedOut),
        json=json,
        headers=_if_match(if_match),
        write=True,
        idempotency_key=key,
    )


# -- tables ----------------------------------------------------------------------------------------


def create_table(
    name: str,
    *,
    database: str | None,
    columns: Sequence[ColumnSpec | Mapping[str, Any]],
    indexes: Sequence[IndexSpec | Mapping[str, Any]],
    key: str | None,
) -> Call[AcceptedOut]:
    body: dict[str, Any] = {"name": name}
    if database is not None:
        body["database"] = database
    if columns:
        body["columns"] = [_spec(c) for c in columns]
    if indexes:
        body["indexes"] = [_spec(i) for i in indexes]
    return _change("POST", "/v1/tables", json=body, key=key)


def track_table(name: str, *, database: str | None, key: str | None) -> Call[AcceptedOut]:
    body = {"name": name} if database is None else {"name": name, "database": database}
    return _change("POST", "/v1/tables/track", json=body, key=key)


def list_tables(
    *, database: str | None, include_deleted: bool, after: UUID | str | None, limit: int
) -> Call[TablePage]:
    params = _params(database=database, include_deleted=include_deleted, after=after, limit=limit)
    return Call("GET", "/v1/tables", model(TablePage), params=params)


def show_table(table_id: UUID | str, *, at_version: int | None) -> Call[TableOut]:
    return Call("GET", f"/v1/tables/{table_id}", model(TableOut), params=_params(at_version=at_version))


def rename_table(
    table_id: UUID | str, name: str, *, if_match: int | None, key: str | None
) -> Call[AcceptedOut]:
    return _change("PATCH", f"/v1/tables/{table_id}", json={"name": name}, key=key, if_match=if_match)


def delete_table(
    table_id: UUID | str, *, if_match: int | None, key: str | None, purge: bool = False
) -> Call[AcceptedOut]:
    call = _change("DELETE", f"/v1/tables/{table_id}", key=key, if_match=if_match)
    return Call(**{**call.__dict__, "params": _params(purge=True)}) if purge else call


def list_trash(*, database: str | None) -> Call[list[TrashOut]]:
    return Call("GET", "/v1/trash", model(list[TrashOut]), params=_params(database=database))


def get_trash(trash_id: UUID | str) -> Call[TrashOut]:
    return Call("GET", f"/v1/trash/{trash_id}", model(TrashOut))


def restore_trash(trash_id: UUID | str, *, name: str | None, key: str | None) -> Call[AcceptedOut]:
    body = {} if name is None else {"name": name}
    return _change("POST", f"/v1/trash/{trash_id}/restore", json=body, key=key)


def purge_trash(trash_id: UUID | str, *, key: str | None) -> Call[AcceptedOut]:
    return _change("DELETE", f"/v1/trash/{trash_id}", key=key)


def reconcile(table_id: UUID | str, strategy: str, *, key: str | None) -> Call[AcceptedOut]:
    return _change("POST", f"/v1/tables/{table_id}/reconcile", json={"strategy": strategy}, key=key)


def table_events(
    table_id: UUID | str, *, after: int | None = None, limit: int = 1000
) -> Call[list[EventOut]]:
    params = _params(after=after, limit=limit)
    return Call("GET", f"/v1/tables/{table_id}/events", model(list[EventOut]), params=params)


# -- columns and indexes ---------------------------------------------------------------------------


def add_column(
    table_id: UUID | str, spec: ColumnSpec | Mapping[str, Any], *, if_match: int | None, key: str | None
) -> Call[AcceptedOut]:
    return _change("POST", f"/v1/tables/{table_id}/columns", json=_spec(spec), key=key, if_match=if_match)


def alter_column(
    table_id: UUID | str, name: str, patch: Mapping[str, Any], *, if_match: int | None, key: str | None
) -> Call[AcceptedOut]:
    path = f"/v1/tables/{table_id}/columns/{name}"
    return _change("PATCH", path, json=dict(patch), key=key, if_match=if_match)


def remove_column(
    table_id: UUID | str, name: str, *, if_match: int | None, key: str | None
) -> Call[AcceptedOut]:
    return _change("DELETE", f"/v1/tables/{table_id}/columns/{name}", key=key, if_match=if_match)


def add_index(
    table_id: UUID | str, spec: IndexSpec | Mapping[str, Any], *, if_match: int | None, key: str | None
) -> Call[AcceptedOut]:
    return _change("POST", f"/v1/tables/{table_id}/indexes", json=_spec(spec), key=key, if_match=if_match)


def drop_index(
    table_id: UUID | str, name: str, *, if_match: int | None, key: str | None
) -> Call[AcceptedOut]:
    return _change("DELETE", f"/v1/tables/{table_id}/indexes/{name}", key=key, if_match=if_match)


# -- operations ------------------------------------------------------------------------------------


def get_operation(operation_id: UUID | str, *, wait: float | None = None) -> Call[OperationOut]:
    params = _params(wait=None if wait is None else round(min(max(wait, 0.001), LONGEST_WAIT), 3))
    return Call("GET", f"/v1/operations/{operation_id}", model(OperationOut), params=params)


def undo_operation(operation_id: UUID | str, *, if_match: int | None, key: str | None) -> Call[AcceptedOut]:
    return _change("POST", f"/v1/operations/{operation_id}/undo", key=key, if_match=if_match)


def list_operations(
    *, table_id: UUID | str | None, status: str | None, limit: int
) -> Call[list[OperationOut]]:
    params = _params(table_id=table_id, status=status, limit=limit)
    return Call("GET", "/v1/operations", model(list[OperationOut]), params=params)


# -- databases -------------------------------------------------------------------------------------


def register_database(name: str, url: str, *, key: str | None) -> Call[DatabaseOut]:
    body = {"name": name, "url": url}
    return Call("POST", "/v1/databases", model(DatabaseOut), json=body, write=True, idempotency_key=key)


def list_databases() -> Call[DatabaseList]:
    return Call("GET", "/v1/databases", model(DatabaseList))


def get_database(name: str) -> Call[DatabaseOut]:
    return Call("GET", f"/v1/databases/{name}", model(DatabaseOut))


def check_database(name: str, *, key: str | None) -> Call[CheckOut]:
    return Call("POST", f"/v1/databases/{name}/check", model(CheckOut), write=True, idempotency_key=key)


def unregister_database(name: str, *, key: str | None) -> Call[OkOut]:
    return Call("DELETE", f"/v1/databases/{name}", model(OkOut), write=True, idempotency_key=key)


def database_drift(name: str) -> Call[DriftReportOut]:
    return Call("GET", f"/v1/databases/{name}/drift", model(DriftReportOut))


# -- webhooks --------------------------------------------------------------------------------------


def create_webhook(
    url: str, events: Sequence[str], *, secret: str | None, key: str | None
) -> Call[NewWebhookOut]:
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if secret is not None:
        body["secret"] = secret
    return Call("POST", "/v1/webhooks", model(NewWebhookOut), json=body, write=True, idempotency_key=key)


def list_webhooks() -> Call[WebhookList]:
    return Call("GET", "/v1/webhooks", model(WebhookList))


def get_webhook(webhook_id: UUID | str) -> Call[WebhookOut]:
    return Call("GET", f"/v1/webhooks/{webhook_id}", model(WebhookOut))


def delete_webhook(webhook_id: UUID | str, *, key: str | None) -> Call[OkOut]:
    return Call("DELETE", f"/v1/webhooks/{webhook_id}", model(OkOut), write=True, idempotency_key=key)


def webhook_deliveries(webhook_id: UUID | str, *, limit: int | None) -> Call[DeliveryList]:
    return Call(
        "GET", f"/v1/webhooks/{webhook_id}/deliveries", model(DeliveryList), params=_params(limit=limit)
    )
