"""Webhooks on the real service (in-process API and worker, PostgreSQL core, SQLite BYODB) sending to a real
HTTP receiver on 127.0.0.1: a receiver that fails its first three requests still gets every event, once,
in order per table, each signed; the secret is shown once and stored encrypted; refusals write nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_synced


@dataclass
class Receiver:
    """Answers 500 to its first ``fail_first`` requests, 200 after; keeps every request."""

    fail_first: int
    requests: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = 500 if len(self.requests) < self.fail_first else 200
            self.requests.append((status, headers, body))
            return status

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for s, h, b in self.requests if s == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(fail_first=3)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def hooked(settings_factory: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Container]:
    settings = settings_factory(
        f"sqlite:///{tmp_path / 'byodb.sqlite3'}",
        webhook_allowed_hosts="127.0.0.1",
        webhook_retry_base_delay=0.1,
        webhook_retry_max_delay=0.2,
        webhook_retry_for=30,
    )
    async with running_service(settings) as container:
        yield container


@pytest.fixture
async def client(hooked: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hooked.web_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        yield c


def core_rows(core: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(core) as conn:
        return conn.execute(query, params).fetchall()


async def test_a_receiver_failing_three_times_gets_every_event_once_in_order_per_table_signed(
    client: httpx.AsyncClient, receiver: Receiver, core_db: str
) -> None:
    r = await client.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    created = r.json()
    secret, webhook_id = created["secret"], created["webhook_id"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert r.headers["Location"] == f"/v1/webhooks/{webhook_id}"
    ((since,),) = core_rows(
        core_db, "SELECT dispatched_to FROM rm_webhooks WHERE webhook_id = %s", created["webhook_id"]
    )

    tables = []
    for name in ("hooked_a", "hooked_b"):
        tables.append((await client.post("/table/create", json={"name": name})).json()["table"]["table_id"])
    for n in range(3):
        for table_id in tables:
            r = await client.post(f"/v1/tables/{table_id}/columns", json={"name": f"c{n}", "type": "integer"})
            assert r.status_code == 202, r.text
    for table_id in tables:
        await wait_synced(client, table_id)

    expected = [
        p
        for (p,) in core_rows(
            core_db, "SELECT position FROM event_store_events WHERE position > %s ORDER BY position", since
        )
    ]
    deadline = asyncio.get_running_loop().time() + 30
    while len(receiver.delivered()) < len(expected):
        assert asyncio.get_running_loop().time() < deadline, (len(receiver.delivered()), len(expected))
        await asyncio.sleep(0.1)

    assert [s for s, _, _ in receiver.requests[:3]] == [500, 500, 500]
    seen: dict[str, list[int]] = {}
    for headers, body in receiver.delivered():
        assert (
            headers["x-schemasaga-signature"]
            == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        )
        event = json.loads(body)
        assert headers["x-schemasaga-event-id"] == event["event_id"]
        assert headers["x-schemasaga-event-type"] == event["event_type"]
        assert headers["content-type"] == "application/json"
        seen.setdefault(event["stream"], []).append(event["position"])
    # Every event once; each table's in its order.
    assert sorted(p for ps in seen.values() for p in ps) == expected
    for stream, positions in seen.items():
        assert positions == sorted(positions), stream
    assert {f"Table${t}" for t in tables} <= set(seen)

    # The deliveries as the API shows them: the three failures on record.
    deliveries = (await client.get(f"/v1/webhooks/{webhook_id}/deliveries")).json()["items"]
    assert [d["position"] for d in deliveries] == sorted(expected, reverse=True)
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert sum(d["attempts"] for d in deliveries) == len(expected) + 3
    retried = [d for d in deliveries if d["attempts"] > 1]
    assert retried and all(d["last_status_code"] == 200 and d["next_attempt_at"] is None for d in retried)


async def test_the_secret_is_shown_once_stored_encrypted_and_the_webhook_can_be_deleted(
    client: httpx.AsyncClient, receiver: Receiver, core_db: str
) -> None:
    given = "a-secret-of-my-own-choosing"
    r = await client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["TableCreated"], "secret": given}
    )
    assert r.status_code == 201, r.text
    assert r.json()["secret"] is None  # the caller's own: not echoed
    generated = await client.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
    secret = generated.json()["secret"]
    webhook_id = r.json()["webhook_id"]

    listed = await client.get("/v1/webhooks")
    assert {w["webhook_id"] for w in listed.json()["items"]} == {webhook_id, generated.json()["webhook_id"]}
    shown = await client.get(f"/v1/webhooks/{webhook_id}")
    assert shown.json() == {
        "webhook_id": webhook_id,
        "url": receiver.url,
        "events": ["TableCreated"],
        "created_at": shown.json()["created_at"],
    }
    for text in (listed.text, shown.text):
        assert given not in text and secret not in text
    # Nowhere in the core database in clear, nor the URL (it may carry a token).
    for value in (given, secret, receiver.url):
        ((hits,),) = core_rows(
            core_db,
            "SELECT (SELECT count(*) FROM event_store_events WHERE data::text LIKE %s) "
            "+ (SELECT count(*) FROM rm_webhooks WHERE row(rm_webhooks.*)::text LIKE %s)",
            f"%{value}%",
            f"%{value}%",
        )
        assert hits == 0, value
    types = [
        t
        for (t,) in core_rows(
            core_db, "SELECT event_type FROM event_store_events WHERE event_type LIKE 'Webhook%%'"
        )
    ]
    assert types == ["WebhookCreated", "WebhookCreated"]

    assert (await client.delete(f"/v1/webhooks/{webhook_id}")).status_code == 200
    assert error_of(await client.get(f"/v1/webhooks/{webhook_id}"))["code"] == "webhook_not_found"
    assert error_of(await client.delete(f"/v1/webhooks/{webhook_id}"))["code"] == "webhook_not_found"
    assert (await client.get(f"/v1/webhooks/{webhook_id}/deliveries")).status_code == 200
    assert [
        t
        for (t,) in core_rows(
            core_db,
            "SELECT event_type FROM event_store_events WHERE event_type LIKE 'Webhook%%' ORDER BY position",
        )
    ][-1] == "WebhookDeleted"


async def test_bad_webhooks_are_refused_and_write_nothing(client: httpx.AsyncClient, core_db: str) -> None:
    def written() -> tuple[Any, ...]:
        return core_rows(
            core_db, "SELECT (SELECT count(*) FROM event_store_events), (SELECT count(*) FROM rm_webhooks)"
        )[0]

    before = written()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "http://10.1.2.3/hook", "events": ["*"]}, "webhook_target_not_allowed"),
        ({"url": "http://127.0.0.2/hook", "events": ["*"]}, "webhook_target_not_allowed"),
        ({"url": "http://hooks.example.com/x", "events": ["*"]}, "webhook_target_not_allowed"),
        ({"url": "ftp://127.0.0.1/hook", "events": ["*"]}, "invalid_webhook"),
        ({"url": "http://user:pw@127.0.0.1/hook", "events": ["*"]}, "invalid_webhook"),
        ({"url": "http://127.0.0.1:99999/hook", "events": ["*"]}, "invalid_webhook"),
        ({"url": "http://127.0.0.1/hook", "events": ["TableInvented"]}, "unknown_event_type"),
        ({"url": "http://127.0.0.1/hook", "events": []}, "invalid_webhook"),
        ({"url": "http://127.0.0.1/hook", "events": ["*", "TableCreated"]}, "invalid_webhook"),
        ({"url": "http://127.0.0.1/hook", "events": ["*"], "secret": "short"}, "invalid_webhook"),
        ({"url": "http://127.0.0.1/hook", "events": ["*"], "retries": 3}, "unknown_field"),
    ]
    for body, code in cases:
        r = await client.post("/v1/webhooks", json=body)
        assert r.status_code == 422, (body, r.text)
        assert error_of(r)["code"] == code, (body, r.text)
    r = await client.get("/v1/webhooks/5b0b0a4e-8a61-4c1e-9a57-111111111111/deliveries")
    assert error_of(r)["code"] == "webhook_not_found"
    assert written() == before
