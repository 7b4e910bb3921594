"""Idempotency-Key on the service's write routes: a retry answers what the first request answered and
writes nothing more; the same key with another request is refused; keys are the caller's and live 24 h.
(Concurrent requests with one key, at the real server: tests/acceptance/test_idempotency.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from schemasaga.bootstrap import Container
from tests.conftest import error_of
from tests.integration.conftest import wait_operation

# The events a request writes. The saga of an accepted request goes on writing its own (steps, outcome)
# in the worker while a test counts, so those are left out: counting them made these tests race the worker.
REQUEST_EVENTS = (
    "TableCreated",
    "TableChanged",
    "TableAltered",
    "TableDeleted",
    "TableTracked",
    "TableReconciliationRequested",
)


async def counts(svc: Container) -> tuple[int, int, int]:
    """Events written by requests, operations and stored keys."""
    async with svc.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT (SELECT count(*) FROM event_store_events WHERE event_type = ANY(%s)),"
                " (SELECT count(*) FROM rm_operations), (SELECT count(*) FROM idempotency_keys)",
                (list(REQUEST_EVENTS),),
            )
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


async def test_a_retried_create_answers_the_first_answer_and_makes_one_table(
    client: httpx.AsyncClient, service: Container
) -> None:
    body = {"name": "once"}
    first = await client.post("/v1/tables", json=body, headers=key("create-once"))
    assert first.status_code == 202, first.text
    after_first = await counts(service)
    again = await client.post("/v1/tables", json=body, headers=key("create-once"))
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotency-replayed"] == "true"
    assert await counts(service) == after_first
    await wait_operation(client, first.json()["operation_id"])
    listed = (await client.get("/v1/tables")).json()["items"]
    assert [t["name"] for t in listed] == ["once"]
    # Even once the first has finished (a table "once" now exists: a new create would be refused 409).
    late = await client.post("/v1/tables", json=body, headers=key("create-once"))
    assert (late.status_code, late.json()) == (202, first.json())


async def test_the_same_key_with_another_request_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, service: Container
) -> None:
    first = await client.post("/v1/tables", json={"name": "alpha"}, headers=key("k1"))
    assert first.status_code == 202, first.text
    before = await counts(service)
    for method, path, body in [
        ("POST", "/v1/tables", {"name": "beta"}),  # another body
        ("POST", "/v1/tables?dry_run=true", {"name": "alpha"}),  # another query
        ("POST", "/v1/tables/track", {"name": "alpha"}),  # another path
    ]:
        r = await client.request(method, path, json=body, headers=key("k1"))
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "idempotency_key_reused"
    assert await counts(service) == before


async def test_demo_routes_replay_too(client: httpx.AsyncClient, service: Container) -> None:
    created = await client.post("/table/create", json={"name": "demo"}, headers=key("d1"))
    assert created.status_code == 200, created.text
    again = await client.post("/table/create", json={"name": "demo"}, headers=key("d1"))
    assert again.json() == created.json()
    table_id = created.json()["table"]["table_id"]
    await wait_operation(client, created.json()["operation_id"])
    column = {"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    added = await client.post("/table/column", json=column, headers=key("d2"))
    before = await counts(service)
    assert (await client.post("/table/column", json=column, headers=key("d2"))).json() == added.json()
    assert await counts(service) == before
    refused = await client.post("/table/delete", json={"table_id": table_id}, headers=key("d2"))
    assert refused.status_code == 422 and error_of(refused)["code"] == "idempotency_key_reused"
    assert refused.json()["status"] == "error"  # the demo's shape


async def test_refusals_are_not_kept_and_bad_keys_are_400(
    client: httpx.AsyncClient, service: Container
) -> None:
    bad = await client.post("/v1/tables", json={"name": "1bad"}, headers=key("k2"))
    assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_name"
    # A request without a key, from the same task (the in-process transport runs requests in the
    # caller's context), takes no key either.
    plain = await client.post("/v1/tables", json={"name": "plain"})
    assert plain.status_code == 202, plain.text
    before = await counts(service)
    assert before[2] == 0
    # The key answered nothing: the corrected request may use it.
    good = await client.post("/v1/tables", json={"name": "good"}, headers=key("k2"))
    assert good.status_code == 202, good.text
    for value in ["", "x" * 256, "with space"]:
        r = await client.post("/v1/tables", json={"name": "other"}, headers=key(value))
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_idempotency_key", (value, r.text)


async def test_every_change_route_replays(client: httpx.AsyncClient, service: Container) -> None:
    created = await client.post("/v1/tables", json={"name": "t"})
    table_id = created.json()["table_id"]
    await wait_operation(client, created.json()["operation_id"])
    steps: list[tuple[str, str, Any]] = [
        ("POST", f"/v1/tables/{table_id}/columns", {"name": "c", "type": "integer"}),
        ("PATCH", f"/v1/tables/{table_id}/columns/c", {"type": "bigint"}),
        ("POST", f"/v1/tables/{table_id}/indexes", {"columns": ["c"]}),
        ("DELETE", f"/v1/tables/{table_id}/indexes/t_c_idx", None),
        ("DELETE", f"/v1/tables/{table_id}/columns/c", None),
        ("PATCH", f"/v1/tables/{table_id}", {"name": "u"}),
        ("DELETE", f"/v1/tables/{table_id}", None),
    ]
    for n, (method, path, body) in enumerate(steps):
        first = await client.request(method, path, json=body, headers=key(f"step-{n}"))
        assert first.status_code == 202, (path, first.text)
        # The worker appends the saga's events meanwhile: count once it is done, so that only the
        # replay could change the counts.
        assert (await wait_operation(client, first.json()["operation_id"]))["status"] == "completed"
        before = await counts(service)
        again = await client.request(method, path, json=body, headers=key(f"step-{n}"))
        assert (again.status_code, again.json()) == (202, first.json()), path
        assert await counts(service) == before


async def test_keys_are_per_token(
    svc_with_tokens: tuple[Container, httpx.AsyncClient, dict[str, str]],
) -> None:
    service, client, tokens = svc_with_tokens
    one = {"Authorization": f"Bearer {tokens['one']}", **key("shared")}
    two = {"Authorization": f"Bearer {tokens['two']}", **key("shared")}
    a = await client.post("/v1/tables", json={"name": "a"}, headers=one)
    b = await client.post("/v1/tables", json={"name": "b"}, headers=two)
    assert a.status_code == b.status_code == 202, (a.text, b.text)
    assert a.json()["operation_id"] != b.json()["operation_id"]
    # A token's new secret is shown once: the replay answers its record without it.
    admin = {"Authorization": f"Bearer {tokens['admin']}", **key("new-token")}
    made = await client.post("/v1/tokens", json={"name": "three", "scope": "read"}, headers=admin)
    assert made.status_code == 201 and made.json()["token"], made.text
    replayed = await client.post("/v1/tokens", json={"name": "three", "scope": "read"}, headers=admin)
    assert replayed.status_code == 201
    assert replayed.json() == {**made.json(), "token": None}
    async with service.pool.connection() as conn:
        stored = await (
            await conn.execute("SELECT body FROM idempotency_keys WHERE key = 'new-token'")
        ).fetchone()
    assert stored is not None and made.json()["token"].encode() not in bytes(stored[0])


async def test_expired_keys_are_taken_anew_and_purged(client: httpx.AsyncClient, service: Container) -> None:
    first = await client.post("/v1/tables", json={"name": "aged"}, headers=key("old-key"))
    async with service.pool.connection() as conn:
        await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    # 24 h later: the key is free again (another request takes it).
    second = await client.post("/v1/tables", json={"name": "newer"}, headers=key("old-key"))
    assert second.status_code == 202, second.text
    assert second.json()["table_id"] != first.json()["table_id"]
    async with service.pool.connection() as conn:
        await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    assert await service.web_app().state.services.idempotency.purge_expired() == 1
    assert (await counts(service))[2] == 0


async def test_concurrent_requests_in_one_process_make_one_operation(
    client: httpx.AsyncClient, service: Container
) -> None:
    created = await client.post("/v1/tables", json={"name": "raced"})
    table_id = created.json()["table_id"]
    await wait_operation(client, created.json()["operation_id"])
    # A reconciliation is accepted however many are queued: only the key keeps the retries to one.
    answers = await asyncio.gather(
        *(
            client.post(f"/v1/tables/{table_id}/reconcile", json={"strategy": "repair"}, headers=key("race"))
            for _ in range(8)
        )
    )
    assert {(r.status_code, r.json()["operation_id"]) for r in answers} == {
        (202, answers[0].json()["operation_id"])
    }, [r.text for r in answers]
    async with service.pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM rm_operations")).fetchone()
    assert row is not None and row[0] == 2


@pytest.fixture
async def svc_with_tokens(settings_factory: Any, byodb_pg_url: str) -> Any:
    from tests.integration.conftest import running_service

    async with running_service(settings_factory(byodb_pg_url, auth="required")) as svc:
        tokens = {}
        for name, scope in [("one", "write"), ("two", "write"), ("admin", "admin")]:
            created = await svc.tokens.create(name=name, scope=scope, databases=None, metadata={})
            tokens[name] = created.token
        transport = httpx.ASGITransport(app=svc.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            yield svc, c, tokens
