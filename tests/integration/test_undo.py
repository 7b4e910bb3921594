"""Undo over HTTP (POST /v1/operations/{id}/undo), through the real service on each engine.

On PostgreSQL, MariaDB and SQLite, one table goes through a sequence of change + undo pairs, one per
change kind that has an inverse (a table rename, a column's rename, type, nullability, default and
uniqueness, an index added, an index dropped, a column added). After each undo the live table as
SQLAlchemy's inspector reads it, its rows, and what ``GET /v1/tables/{id}`` shows, are what they were
before the change; each side names the other (``undoes``, ``undone_by``). An undo that the table's rows
could not take (a text column back to integer after a non-number was written) is refused as the change
would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from schemasaga.bootstrap import Container
from schemasaga.client import AsyncClient, SchemasagaError
from schemasaga.config import Settings
from schemasaga.coredb import readmodels
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.live_schema import read_live
from tests.integration.test_saga_flow import counts

# Rows in the table the changes and undos go through: a few in the suite, 10,000 in `make undo-long`.
ROWS = int(os.environ.get("SCHEMASAGA_UNDO_ROWS", "3"))

ENGINES = [
    pytest.param("byodb_pg_url", id="postgresql"),
    pytest.param("byodb_mysql_url", id="mysql", marks=pytest.mark.mariadb),
    pytest.param("byodb_sqlite_url", id="sqlite"),
]

# Each change of the sequence, as (method, path under the table, body); each is undone before the next.
PAIRS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PATCH", "", {"name": "undone_renamed"}),
    ("PATCH", "/columns/age", {"name": "years"}),
    ("PATCH", "/columns/age", {"type": "bigint"}),
    ("PATCH", "/columns/note", {"nullable": False}),
    ("PATCH", "/columns/age", {"default": 7}),
    ("PATCH", "/columns/age", {"unique": True}),
    ("POST", "/indexes", {"columns": ["age"], "name": "ix_undone_age"}),
    ("DELETE", "/indexes/ix_undone_score", None),
    ("POST", "/columns", {"name": "extra", "type": "integer", "default": 3}),
]


@pytest.fixture(params=ENGINES)
def byodb_url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(request.param)
    return value


@pytest.fixture
async def service_and_client(
    settings_factory: Callable[..., Settings], byodb_url: str
) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    async with running_service(settings_factory(byodb_url)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            yield container, c


def run(url: str, sql: str, *params: dict[str, Any]) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), list(params) or None)
    finally:
        engine.dispose()


async def completed(client: httpx.AsyncClient, r: httpx.Response) -> str:
    assert r.status_code == 202, r.text
    operation = await wait_operation(client, r.json()["operation_id"])
    assert operation["status"] == "completed", operation["last_error"]
    return str(operation["operation_id"])


async def undo(client: httpx.AsyncClient, operation_id: str, **kwargs: Any) -> httpx.Response:
    return await client.post(f"/v1/operations/{operation_id}/undo", **kwargs)


def rows(url: str, table: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            live = sa.Table(table, sa.MetaData(), autoload_with=conn)
            return [tuple(row) for row in conn.execute(sa.select(live).order_by(live.c.id))]
    finally:
        engine.dispose()


async def state(client: httpx.AsyncClient, url: str, table_id: str) -> tuple[Any, ...]:
    """The table as the inspector reads it, its rows, and the table as the service shows it (less its
    version)."""
    shown = await wait_synced(client, table_id)
    live = await asyncio.to_thread(read_live, url, shown["name"])
    assert live is not None
    answer = (await client.get(f"/v1/tables/{table_id}")).json()
    return (
        (live.name, live.columns, live.primary_key, sorted(live.indexes, key=repr)),
        await asyncio.to_thread(rows, url, live.name),
        {k: answer[k] for k in ("name", "columns", "indexes", "primary_key", "exists")},
        shown["columns"],
    )


async def test_each_change_kind_is_undone_on_the_live_schema_and_in_the_metadata(
    service_and_client: tuple[Container, httpx.AsyncClient], byodb_url: str
) -> None:
    container, client = service_and_client
    r = await client.post(
        "/v1/tables",
        json={
            "name": "undone",
            "columns": [
                {"name": "age", "type": "integer"},
                {"name": "note", "type": "text"},
                {"name": "score", "type": "decimal"},
            ],
            "indexes": [{"columns": ["score"], "name": "ix_undone_score"}],
        },
    )
    table_id = str(r.json()["table_id"])
    await completed(client, r)
    values = [
        {"id": key, "age": key * 10 if key < ROWS else 2**30, "note": f"n{key}"} for key in range(1, ROWS + 1)
    ]
    run(byodb_url, "INSERT INTO undone (id, age, note) VALUES (:id, :age, :note)", *values)
    assert len((await state(client, byodb_url, table_id))[1]) == ROWS

    for method, path, body in PAIRS:
        before = await state(client, byodb_url, table_id)
        change = await completed(
            client, await client.request(method, f"/v1/tables/{table_id}{path}", json=body)
        )
        assert await state(client, byodb_url, table_id) != before, (method, path, body)
        undone = await completed(client, await undo(client, change))
        assert await state(client, byodb_url, table_id) == before, (method, path, body)
        assert (await client.get(f"/v1/operations/{change}")).json()["undone_by"] == undone
        undo_op = (await client.get(f"/v1/operations/{undone}")).json()
        assert undo_op["undoes"] == change and undo_op["undone_by"] is None

    # An undo the rows cannot take is refused as the change itself would be, and writes nothing.
    before = await state(client, byodb_url, table_id)
    to_text = await completed(
        client, await client.patch(f"/v1/tables/{table_id}/columns/age", json={"type": "text"})
    )
    bad = ROWS + 1
    run(byodb_url, "INSERT INTO undone (id, age, note) VALUES (:id, 'nine', 'n')", {"id": bad})
    written = await counts(container)
    r = await undo(client, to_text)
    assert r.status_code == 409 and error_of(r)["code"] == "incompatible_rows", r.text
    assert error_of(r)["details"]["primary_keys"] == [bad]
    assert await counts(container) == written
    run(byodb_url, "DELETE FROM undone WHERE id = :id", {"id": bad})
    await completed(client, await undo(client, to_text))
    assert await state(client, byodb_url, table_id) == before


@contextlib.contextmanager
def table_locked(url: str, table: str) -> Iterator[None]:
    """The table locked ACCESS EXCLUSIVE by another session (PostgreSQL) until the block ends."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        yield
        conn.rollback()


async def test_what_cannot_be_undone_is_refused_with_its_code_and_writes_nothing(
    client: httpx.AsyncClient, service: Container, byodb_pg_url: str
) -> None:
    r = await client.post(
        "/v1/tables", json={"name": "rules", "columns": [{"name": "age", "type": "integer"}]}
    )
    table_id, created = str(r.json()["table_id"]), await completed(client, r)
    retype = await completed(
        client, await client.patch(f"/v1/tables/{table_id}/columns/age", json={"type": "bigint"})
    )
    rename = await completed(
        client, await client.patch(f"/v1/tables/{table_id}/columns/age", json={"name": "years"})
    )
    written = await counts(service)

    def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = error_of(r)
        assert problem["code"] == code, problem
        return problem

    refused(await undo(client, "00000000-0000-4000-8000-000000000000"), 404, "operation_not_found")
    problem = refused(await undo(client, retype), 409, "undo_conflict")
    assert problem["details"] == {"operation_id": rename} and rename in problem["message"]
    # Every later change depends on the table's creation.
    problem = refused(await undo(client, created), 409, "undo_conflict")
    assert problem["details"] == {"operation_id": rename}
    stale = (await client.get(f"/v1/tables/{table_id}")).headers["etag"]
    plan = await undo(client, rename, params={"dry_run": "true"})
    assert plan.status_code == 200 and plan.json()["status"] == "planned", plan.text
    assert [s["sql"] for s in plan.json()["statements"]] == [
        'ALTER TABLE "rules" RENAME COLUMN "years" TO "age"'
    ]
    assert await counts(service) == written

    # Idempotency-Key: a retry answers the first undo; If-Match: the table's version.
    key = {"Idempotency-Key": "undo-rename-1"}
    first = await undo(client, rename, headers={**key, "If-Match": stale})
    again = await undo(client, rename, headers={**key, "If-Match": stale})
    assert first.status_code == again.status_code == 202 and again.headers["Idempotency-Replayed"] == "true"
    assert first.json()["operation_id"] == again.json()["operation_id"]
    unrename = await completed(client, first)
    refused(await undo(client, rename, headers={"If-Match": stale}), 412, "version_mismatch")
    problem = refused(await undo(client, rename), 409, "already_undone")
    assert problem["details"] == {"undone_by": unrename}
    # With the rename undone, the type change is undone too (by the Python client); then the undo of the
    # undo redoes it.
    async with AsyncClient(
        "http://schemasaga", transport=httpx.ASGITransport(app=service.web_app())
    ) as typed:
        accepted = await typed.operations.undo(retype)
        assert (await typed.operations.wait(accepted, timeout=20)).undoes == UUID(retype)
        with pytest.raises(SchemasagaError) as again_refused:
            await typed.operations.undo(retype)
        assert again_refused.value.code == "already_undone"
    unretype = str(accepted.operation_id)
    await completed(client, await undo(client, unretype))
    shown = await wait_synced(client, table_id)
    assert shown["columns"]["age"]["type"] == "bigint"

    # An operation still running, then rejected (its DDL cannot take the table's lock), is not undone.
    with table_locked(byodb_pg_url, "rules"):
        r = await client.post(f"/v1/tables/{table_id}/columns", json={"name": "later", "type": "text"})
        pending = str(r.json()["operation_id"])
        refused(await undo(client, pending), 409, "operation_not_completed")
        assert (await wait_operation(client, pending))["status"] == "rejected"
    problem = refused(await undo(client, pending), 409, "operation_not_completed")
    assert "rejected" in problem["message"]

    # Who undid what is rebuilt from the events with the rest of the read models.
    async def undo_links() -> list[tuple[Any, ...]]:
        async with service.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT operation_id, undoes, undone_by FROM rm_operations "
                "WHERE undoes IS NOT NULL OR undone_by IS NOT NULL ORDER BY operation_id"
            )
            return await cur.fetchall()

    page = await client.get(f"/console/tables/{table_id}")
    assert f"undone by <code>{unrename}</code>" in page.text and f"undoes <code>{rename}</code>" in page.text
    links = await undo_links()
    assert len(links) == 5  # the rename and its undo; the type change, its undo and the redo
    async with service.pool.connection() as conn, conn.transaction():
        await readmodels.rebuild(conn, service.store)
    assert await undo_links() == links
