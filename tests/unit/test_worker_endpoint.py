"""The worker's metrics endpoint (``worker --metrics-listen``) as an ASGI app, on an in-memory token
store: the answers the acceptance test (tests/acceptance/test_worker_metrics.py) does not reach, a core
database that does not answer above all, each a clear status in the API's error shape."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from schemasaga.api.worker_endpoint import WorkerProbes, create_worker_endpoint
from schemasaga.domain.access import Scope, TokenCreated, TokenRevoked
from schemasaga.observability.health import Check
from schemasaga.observability.metrics import CONTENT_TYPE_LATEST
from schemasaga.services.tokens import StoredToken, TokenCommands, TokenView

SCRAPE = b"# HELP schemasaga_up x\n# TYPE schemasaga_up gauge\nschemasaga_up 1.0\n"


class MemoryTokens:
    """The token store's port (``services.tokens.TokenStore``) in memory, in ``core``."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.rows: dict[str, StoredToken] = {}

    async def create(
        self, *, event: TokenCreated, secret_hash: str, metadata: Mapping[str, Any]
    ) -> datetime | None:
        self.rows[event.lookup_id] = StoredToken(
            name=event.name, secret_hash=secret_hash, scope=Scope(event.scope), databases=event.databases
        )
        return datetime.now(UTC)

    async def revoke(self, *, event: TokenRevoked, metadata: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    async def find(self, lookup_id: str) -> StoredToken | None:
        await self.core.ping()
        return self.rows.get(lookup_id)

    async def list_tokens(self, *, after: str | None = None, limit: int | None = None) -> list[TokenView]:
        raise NotImplementedError


class Core:
    """The core database as the probes see it: answering or not."""

    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> None:
        if not self.up:
            raise psycopg.OperationalError("connection refused")

    async def readiness(self) -> list[Check]:
        return [Check("core_database", self.up), Check("worker", False, "the worker is not running")]

    async def scrape(self) -> bytes:
        return SCRAPE


async def world(*, tokens_required: bool) -> tuple[httpx.AsyncClient, Core, dict[str, str]]:
    core = Core()
    tokens = TokenCommands(store=MemoryTokens(core))
    made = {}
    for name, databases in (("scraper", None), ("narrow", ["default"])):
        new = await tokens.create(name=name, scope="read", databases=databases, metadata={})
        made[name] = new.token
    app = create_worker_endpoint(
        WorkerProbes(scrape=core.scrape, readiness=core.readiness, ping_core=core.ping, tokens=tokens),
        tokens_required=tokens_required,
        allowed_hosts=frozenset({"127.0.0.1", "localhost", "::1"}),
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9464")
    return client, core, made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_metrics_take_the_token_serve_takes() -> None:
    client, core, made = await world(tokens_required=True)
    async with client:
        for headers in ({}, {"Authorization": "Basic eDp5"}, bearer("ssg_0123456789abcdef_" + "x" * 43)):
            r = await client.get("/metrics", headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["www-authenticate"] == 'Bearer realm="schemasaga"'
            assert r.json()["error"]["code"] == "unauthenticated"
        r = await client.get("/metrics", headers=bearer(made["narrow"]))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        r = await client.get("/metrics", headers=bearer(made["scraper"]))
        assert r.status_code == 200 and r.content == SCRAPE
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
        # A token cannot be checked without the core database: 503, not a 500 nor a 401.
        core.up = False
        r = await client.get("/metrics", headers=bearer(made["scraper"]))
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["error"]["code"] == "core_unavailable"


async def test_probes_are_open_and_say_what_fails() -> None:
    client, core, _ = await world(tokens_required=True)
    async with client:
        r = await client.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {
            "status": "not_ready",
            "checks": {
                "core_database": {"ok": True, "detail": None},
                "worker": {"ok": False, "detail": "the worker is not running"},
            },
        }
        core.up = False
        r = await client.get("/healthz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "core_unavailable"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("GET", "/", {}, 404, "not_found"),
        ("GET", "/v1/tables", {}, 404, "not_found"),
        ("POST", "/metrics", {}, 405, "method_not_allowed"),
        ("DELETE", "/healthz", {}, 405, "method_not_allowed"),
        # A page of another site whose name was rebound to 127.0.0.1.
        ("GET", "/healthz", {"Host": "rebound.example"}, 400, "host_not_allowed"),
    ],
)
async def test_anything_else_is_a_clear_4xx(
    method: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    client, _, _ = await world(tokens_required=False)
    async with client:
        r = await client.request(method, path, headers=headers)
        assert r.status_code == status, r.text
        body = r.json()
        assert body.get("error", body)["code"] == code  # problem details under /v1, as the API's
        if status == 405:
            assert r.headers["allow"] == "GET, HEAD"


async def test_no_token_where_serve_would_take_none() -> None:
    client, _, _ = await world(tokens_required=False)
    async with client:
        r = await client.get("/metrics")
        assert r.status_code == 200 and r.content == SCRAPE
        assert (await client.head("/metrics")).status_code == 200
