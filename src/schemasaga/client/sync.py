"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

import httpx

from schemasaga.api.models import (
    AcceptedOut,
    CheckOut,
    ColumnSpec,
    DatabaseList,
    DatabaseOut,
    DeliveryList,
    DriftReportOut,
    EventOut,
    FeedEventOut,
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
from schemasaga.client import calls
from schemasaga.client._shared import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    client_headers,
    delay,
    may_retry,
    request_args,
)
from schemasaga.client.calls import FINISHED, Call
from schemasaga.client.errors import SchemasagaError
from schemasaga.client.stream import (
    STREAM_PATH,
    STREAM_TIMEOUT,
    SseParser,
    reconnect_delay,
    stream_headers,
    stream_params,
)

T = TypeVar("T")
Id = UUID | str


class Client:
    """``Client("http://127.0.0.1:8000", token=...)``: ``tables``, ``columns``, ``indexes``,
    ``operations``, ``databases``, ``events`` (the live feed too), ``webhooks``, ``trash``. Every change
    is sent with an ``Idempotency-Key`` (one per call, or the one given) and tried again, with that key,
    when the connection fails or the service answers 503; an error answer raises :class:`SchemasagaError`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retries = retries
        self.http = httpx.Client(
            base_url=base_url, headers=client_headers(token, headers), timeout=timeout, transport=transport
        )
        self.tables = Tables(self)
        self.columns = Columns(self)
        self.indexes = Indexes(self)
        self.operations = Operations(self)
        self.databases = Databases(self)
        self.events = Events(self)
        self.trash = Trash(self)
        self.webhooks = Webhooks(self)

    def send(self, call: Call[T]) -> T:
        args = request_args(call)
        attempt = 0
        while True:
            try:
                response = self.http.request(**args)
                if response.status_code >= 400:
                    raise SchemasagaError.from_response(response)
                return call.read(response)
            except (httpx.TransportError, SchemasagaError) as problem:
                if not may_retry(call, problem, attempt, self.retries):
                    raise
            time.sleep(delay(attempt))
            attempt += 1

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Part:
    def __init__(self, client: Client) -> None:
        self._client = client


class Tables(_Part):
    def create(
        self,
        name: str,
        *,
        database: str | None = None,
        columns: Sequence[ColumnSpec | Mapping[str, Any]] = (),
        indexes: Sequence[IndexSpec | Mapping[str, Any]] = (),
        idempotency_key: str | None = None,
    ) -> AcceptedOut:
        call = calls.create_table(
            name, database=database, columns=columns, indexes=indexes, key=idempotency_key
        )
        return self._client.send(call)

    def track(
        self, name: str, *, database: str | None = None, idempotency_key: str | None = None
    ) -> AcceptedOut:
        return self._client.send(calls.track_table(name, database=database, key=idempotency_key))

    def list(
        self,
        *,
        database: str | None = None,
        include_deleted: bool = False,
        after: Id | None = None,
        limit: int = 100,
    ) -> TablePage:
        call = calls.list_tables(database=database, include_deleted=include_deleted, after=after, limit=limit)
        return self._client.send(call)

    def show(self, table_id: Id, *, at_version: int | None = None) -> TableOut:
        return self._client.send(calls.show_table(table_id, at_version=at_version))

    def rename(
        self, table_id: Id, name: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> AcceptedOut:
        return self._client.send(calls.rename_table(table_id, name, if_match=if_match, key=idempotency_key))

    def delete(
        self,
        table_id: Id,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
        purge: bool = False,
    ) -> AcceptedOut:
        """Into the trash (restorable until its retention ends), or dropped at once with ``purge``."""
        call = calls.delete_table(table_id, if_match=if_match, key=idempotency_key, purge=purge)
        return self._client.send(call)

    def reconcile(self, table_id: Id, strategy: str, *, idempotency_key: str | None = None) -> AcceptedOut:
        return self._client.send(calls.reconcile(table_id, strategy, key=idempotency_key))


class Columns(_Part):
    def add(
        self,
        table_id: Id,
        spec: ColumnSpec | Mapping[str, Any],
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> AcceptedOut:
        return self._client.send(calls.add_column(table_id, spec, if_match=if_match, key=idempotency_key))

    def alter(
        self,
        table_id: Id,
        name: str,
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
        **patch: Any,
    ) -> AcceptedOut:
        """``patch``: any of ``name``, ``type``, ``nullable``, ``default`` (None drops it), ``unique``."""
        call = calls.alter_column(table_id, name, patch, if_match=if_match, key=idempotency_key)
        return self._client.send(call)

    def remove(
        self, table_id: Id, name: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> AcceptedOut:
        return self._client.send(calls.remove_column(table_id, name, if_match=if_match, key=idempotency_key))


class Indexes(_Part):
    def add(
        self,
        table_id: Id,
        spec: IndexSpec | Mapping[str, Any],
        *,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> AcceptedOut:
        return self._client.send(calls.add_index(table_id, spec, if_match=if_match, key=idempotency_key))

    def drop(
        self, table_id: Id, name: str, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> AcceptedOut:
        return self._client.send(calls.drop_index(table_id, name, if_match=if_match, key=idempotency_key))


class Operations(_Part):
    def get(self, operation_id: Id) -> OperationOut:
        return self._client.send(calls.get_operation(operation_id))

    def list(
        self, *, table_id: Id | None = None, status: str | None = None, limit: int = 100
    ) -> list[OperationOut]:
        return self._client.send(calls.list_operations(table_id=table_id, status=status, limit=limit))

    def undo(
        self, operation: Id | AcceptedOut, *, if_match: int | None = None, idempotency_key: str | None = None
    ) -> AcceptedOut:
        """Start the undo of a completed operation (``if_match``: the table's version)."""
        operation_id = operation.operation_id if isinstance(operation, AcceptedOut) else operation
        return self._client.send(calls.undo_operation(operation_id, if_match=if_match, key=idempotency_key))

    def wait(self, operation: Id | AcceptedOut, *, timeout: float = 60.0) -> OperationOut:
        """The operation once finished (``completed`` or ``rejected``: check ``status``), long-polling
        ``GET /v1/operations/{id}?wait=``; TimeoutError when it is not finished within ``timeout``."""
        operation_id = operation.operation_id if isinstance(operation, AcceptedOut) else operation
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            op = self._client.send(calls.get_operation(operation_id, wait=max(remaining, 0.001)))
            if op.status in FINISHED:
                return op
            if deadline - time.monotonic() <= 0:
                raise TimeoutError(f"operation {operation_id} is still {op.status} after {timeout:g}s")


class Databases(_Part):
    def register(self, name: str, url: str, *, idempotency_key: str | None = None) -> DatabaseOut:
        return self._client.send(calls.register_database(name, url, key=idempotency_key))

    def list(self) -> DatabaseList:
        return self._client.send(calls.list_databases())

    def get(self, name: str) -> DatabaseOut:
        return self._client.send(calls.get_database(name))

    def check(self, name: str, *, idempotency_key: str | None = None) -> CheckOut:
        return self._client.send(calls.check_database(name, key=idempotency_key))

    def unregister(self, name: str, *, idempotency_key: str | None = None) -> OkOut:
        return self._client.send(calls.unregister_database(name, key=idempotency_key))

    def drift(self, name: str) -> DriftReportOut:
        return self._client.send(calls.database_drift(name))


class Webhooks(_Part):
    def create(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        secret: str | None = None,
        idempotency_key: str | None = None,
    ) -> NewWebhookOut:
        """A webhook (admin): ``secret`` is generated when not given, and then in this answer only."""
        return self._client.send(calls.create_webhook(url, events, secret=secret, key=idempotency_key))

    def list(self) -> WebhookList:
        return self._client.send(calls.list_webhooks())

    def get(self, webhook_id: Id) -> WebhookOut:
        return self._client.send(calls.get_webhook(webhook_id))

    def delete(self, webhook_id: Id, *, idempotency_key: str | None = None) -> OkOut:
        return self._client.send(calls.delete_webhook(webhook_id, key=idempotency_key))

    def deliveries(self, webhook_id: Id, *, limit: int | None = None) -> DeliveryList:
        """The newest first: attempts, the last answer, the next attempt."""
        return self._client.send(calls.webhook_deliveries(webhook_id, limit=limit))


class Events(_Part):
    def list(self, *, table_id: Id, after: int | None = None, limit: int = 1000) -> list[EventOut]:
        """A table's events, oldest first, a page at a time: those after version ``after``, at most ``limit``
        (at most 1000). (The live feed of every table:
        ``stream``.)"""
        return self._client.send(calls.table_events(table_id, after=after, limit=limit))

    def stream(
        self,
        *,
        after: int | None = None,
        stream: str | None = None,
        types: Sequence[str] = (),
        table_id: Id | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[FeedEventOut]:
        """The live feed: every event positioned after ``after`` (from the first without it) that passes
        the filters, in position order, endlessly. When the connection breaks or the service restarts it
        connects again with ``Last-Event-ID``, so each event comes once, none is skipped. ``timeout``:
        stop after this many seconds. An error answer (a bad filter, 401, 403) raises
        :class:`SchemasagaError`; a 503 is tried again."""
        parser = SseParser(last_id=after)
        params = stream_params(
            stream=stream, types=types, table_id=table_id, correlation_id=correlation_id, timeout=None
        )
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            parser.reset()
            query = httpx.QueryParams(
                params if remaining is None else [*params, ("timeout", f"{remaining:.3f}")]
            )
            try:
                with self._client.http.stream(
                    "GET", STREAM_PATH, params=query, headers=stream_headers(parser), timeout=STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        error = SchemasagaError.from_response(response)
                        if not error.retryable:
                            raise error
                    else:
                        failures = 0
                        for line in response.iter_lines():
                            event = parser.line(line)
                            if event is not None:
                                yield event
            except httpx.TransportError:
                pass
            time.sleep(reconnect_delay(failures, deadline, time.monotonic()))
            failures += 1


class Trash(_Part):
    """Deleted tables and removed columns, restorable until their retention ends."""

    def list(self, *, database: str | None = None) -> list[TrashOut]:
        return self._client.send(calls.list_trash(database=database))

    def get(self, trash_id: Id) -> TrashOut:
        return self._client.send(calls.get_trash(trash_id))

    def restore(
        self, trash_id: Id, *, name: str | None = None, idempotency_key: str | None = None
    ) -> AcceptedOut:
        return self._client.send(calls.restore_trash(trash_id, name=name, key=idempotency_key))

    def purge(self, trash_id: Id, *, idempotency_key: str | None = None) -> AcceptedOut:
        return self._client.send(calls.purge_trash(trash_id, key=idempotency_key))
