"""Access under ``SCHEMASAGA_AUTH=required``: every route of the service against every kind of caller (no
token, a read, a write and an admin token, and an admin token limited to another database), with the
answer each must get and nothing written on a refusal; then the token lifecycle over HTTP, the actor
recorded in the events, the Host allow-list and CORS.

One service for the module (a fresh core database and SQLite BYODBs, a worker): a case that is to change
something gets targets of its own, made with the admin token before it runs, so the cases do not depend
on one another. What a request wrote is counted by its own request id (``X-Request-Id`` is recorded in
the metadata of every event it appends), which the worker's activity for other cases cannot change.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from schemasaga.api.app import create_app
from schemasaga.bootstrap import Container
from schemasaga.cli import main
from schemasaga.client.stream import SseParser
from tests.conftest import create_database, drop_database, error_of, with_dbname
from tests.integration.conftest import fast_settings, running_service

NONE, READ, WRITE, ADMIN, OTHER = "none", "read", "write", "admin", "other_db"
CALLERS = (NONE, READ, WRITE, ADMIN, OTHER)
RANK = {READ: 0, WRITE: 1, ADMIN: 2}


@dataclass
class World:
    """The module's service and what the cases share: tokens, a table that only reads touch, the
    database files."""

    container: Container
    client: httpx.AsyncClient
    core: str
    folder: Path
    tokens: dict[str, str]
    keep: str  # a settled table of `default` with a column `age` and an index `ix_keep`
    keep_operation: str
    keep_webhook: str = ""
    names: Iterator[int] = field(default_factory=itertools.count)
    keep_trash: str | None = None  # a trash entry that only reads touch

    def name(self, prefix: str) -> str:
        return f"{prefix}_{next(self.names)}"

    def auth(self, caller: str) -> dict[str, str]:
        return {} if caller == NONE else {"Authorization": f"Bearer {self.tokens[caller]}"}

    async def admin(self, method: str, url: str, json: Any = None) -> httpx.Response:
        r = await self.client.request(method, url, json=json, headers=self.auth(ADMIN))
        assert r.status_code < 300, r.text
        return r

    async def settled(self, operation_url: str) -> None:
        deadline = time.monotonic() + 20
        while (await self.admin("GET", operation_url)).json()["status"] not in ("completed", "rejected"):
            assert time.monotonic() < deadline, operation_url
            await asyncio.sleep(0.05)

    async def fresh_table(self) -> str:
        """A settled table of `default` with columns `age` and `extra`, and an index `ix_<name>` on `age`."""
        name = self.name("t")
        body = {
            "name": name,
            "columns": [{"name": "age", "type": "integer"}, {"name": "extra", "type": "text"}],
        }
        body["indexes"] = [{"columns": ["age"], "name": f"ix_{name}"}]
        accepted = (await self.admin("POST", "/v1/tables", body)).json()
        await self.settled(accepted["operation_url"])
        return str(accepted["table_id"])

    async def table(self, writes: bool) -> str:
        return await self.fresh_table() if writes else self.keep

    async def fresh_database(self) -> str:
        name = self.name("db")
        await self.admin("POST", "/v1/databases", {"name": name, "url": self.sqlite(name)})
        return name

    def sqlite(self, name: str) -> str:
        return f"sqlite:///{self.folder / f'{name}.sqlite3'}"

    def events_of(self, request_id: str) -> int:
        with psycopg.connect(self.core) as conn:
            row = conn.execute(
                "SELECT count(*) FROM event_store_events WHERE metadata->>'request_id' = %s", (request_id,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def stored(self) -> tuple[int, int, int, int]:
        """Rows no background work adds: operations, registered databases, tokens, live webhooks."""
        with psycopg.connect(self.core) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM rm_operations), (SELECT count(*) FROM rm_databases), "
                "(SELECT count(*) FROM api_tokens), "
                "(SELECT count(*) FROM rm_webhooks WHERE deleted_at IS NULL)"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])


Request = tuple[str, str, Any]  # method, path, JSON body
Build = Callable[[World, bool], Awaitable[Request]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as the OpenAPI document names it
    needs: str  # read, write, admin; "open": no token needed
    build: Build
    # What an admin token limited to another database gets: "refused" (the route touches a database or
    # a table of `default`, or reaches every database), or "filtered" (a listing of its databases only).
    other_db: str = "refused"

    def expected(self, caller: str) -> int:
        if self.needs == "open":
            return 200
        if caller == NONE:
            return 401
        if caller == OTHER:
            return 200 if self.other_db == "filtered" else 403
        return self.success if RANK[caller] >= RANK[self.needs] else 403

    @property
    def success(self) -> int:
        if self.template in ("/v1/databases", "/v1/tokens", "/v1/webhooks") and self.method == "POST":
            return 201
        accepted = (
            self.template.startswith(("/v1/tables", "/v1/trash")) or self.template.endswith("/undo")
        ) and self.method != "GET"
        return 202 if accepted else 200

    @property
    def writes(self) -> bool:
        return self.needs != "open" and self.method != "GET" and not self.template.endswith("/show")


async def _track(w: World, _: bool) -> Request:
    name = w.name("unmanaged")
    with sqlite3.connect(w.folder / "default.sqlite3") as db:
        db.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY)")
    return "POST", "/v1/tables/track", {"name": name}


async def _token(w: World, _: bool) -> Request:
    name = w.name("tok")
    await w.container.tokens.create(name=name, scope="read", databases=None, metadata={"actor": "test"})
    return "DELETE", f"/v1/tokens/{name}", None


def _on_table(method: str, path: str, body: Any = None) -> Build:
    async def build(w: World, writes: bool) -> Request:
        table = await w.table(writes)
        return method, path.format(t=table), body(w) if callable(body) else body

    return build


def _in_body(method: str, path: str, body: dict[str, Any]) -> Build:
    async def build(w: World, writes: bool) -> Request:
        table = await w.table(writes)
        return method, path, {k: (table if v == "{t}" else v) for k, v in body.items()}

    return build


def _plain(method: str, path: str) -> Build:
    async def build(w: World, _: bool) -> Request:
        return method, path, None

    return build


async def _index_of(w: World, writes: bool) -> Request:
    table = await w.table(writes)
    name = (await w.admin("GET", f"/v1/tables/{table}")).json()["indexes"][0]["name"]
    return "DELETE", f"/v1/tables/{table}/indexes/{name}", None


async def _operation(w: World, _: bool) -> Request:
    return "GET", f"/v1/operations/{w.keep_operation}", None


async def _undo(w: World, writes: bool) -> Request:
    """The undo of a completed index drop (of a fresh table when it is to succeed)."""
    if not writes:
        return "POST", f"/v1/operations/{w.keep_operation}/undo", None
    table = await w.fresh_table()
    index = (await w.admin("GET", f"/v1/tables/{table}")).json()["indexes"][0]["name"]
    dropped = (await w.admin("DELETE", f"/v1/tables/{table}/indexes/{index}")).json()
    await w.settled(dropped["operation_url"])
    return "POST", f"/v1/operations/{dropped['operation_id']}/undo", None


async def _database(method: str, suffix: str, w: World, writes: bool) -> Request:
    name = await w.fresh_database() if writes else "default"
    return method, f"/v1/databases/{name}{suffix}", None


async def _register(w: World, _: bool) -> Request:
    name = w.name("reg")
    return "POST", "/v1/databases", {"name": name, "url": w.sqlite(name)}


async def _new_table_demo(w: World, _: bool) -> Request:
    return "POST", "/table/create", {"name": w.name("demo")}


async def _new_table(w: World, _: bool) -> Request:
    return "POST", "/v1/tables", {"name": w.name("new")}


async def _trash_entry(w: World) -> str:
    """A fresh table of `default`, deleted into the trash: its trash entry's id."""
    table = await w.fresh_table()
    accepted = (await w.admin("DELETE", f"/v1/tables/{table}")).json()
    await w.settled(accepted["operation_url"])
    return str(accepted["operation_id"])


def _on_trash(method: str, suffix: str) -> Build:
    async def build(w: World, writes: bool) -> Request:
        if writes or w.keep_trash is None:
            entry = await _trash_entry(w)
            if not writes:
                w.keep_trash = entry
        return method, f"/v1/trash/{entry if writes else w.keep_trash}{suffix}", None

    return build


async def _new_token(w: World, _: bool) -> Request:
    return "POST", "/v1/tokens", {"name": w.name("made"), "scope": "read"}


# Webhooks of the table send to a closed port, and only on token revocations.
WEBHOOK = {"url": "http://127.0.0.1:9/hook", "events": ["TokenRevoked"]}


async def _new_webhook(w: World, _: bool) -> Request:
    return "POST", "/v1/webhooks", WEBHOOK


async def _webhook(method: str, suffix: str, w: World, writes: bool) -> Request:
    if writes or not w.keep_webhook:
        made = (await w.admin("POST", "/v1/webhooks", WEBHOOK)).json()["webhook_id"]
        if not writes:
            w.keep_webhook = made
        return method, f"/v1/webhooks/{made}{suffix}", None
    return method, f"/v1/webhooks/{w.keep_webhook}{suffix}", None


ROUTES = [
    Route("POST", "/table/create", WRITE, _new_table_demo),
    Route("POST", "/table/delete", WRITE, _in_body("POST", "/table/delete", {"table_id": "{t}"})),
    Route("POST", "/table/show", READ, _in_body("POST", "/table/show", {"table_id": "{t}"})),
    Route(
        "POST",
        "/table/column",
        WRITE,
        _in_body("POST", "/table/column", {"table_id": "{t}", "column": {"name": "note", "type": "text"}}),
    ),
    Route("POST", "/v1/tables", WRITE, _new_table),
    Route("POST", "/v1/tables/track", WRITE, _track),
    Route("GET", "/v1/tables", READ, _plain("GET", "/v1/tables"), other_db="filtered"),
    Route("GET", "/v1/tables/{table_id}", READ, _on_table("GET", "/v1/tables/{t}")),
    Route(
        "PATCH",
        "/v1/tables/{table_id}",
        WRITE,
        _on_table("PATCH", "/v1/tables/{t}", lambda w: {"name": w.name("renamed")}),
    ),
    Route("DELETE", "/v1/tables/{table_id}", WRITE, _on_table("DELETE", "/v1/tables/{t}")),
    Route(
        "POST",
        "/v1/tables/{table_id}/columns",
        WRITE,
        _on_table("POST", "/v1/tables/{t}/columns", {"name": "note", "type": "text"}),
    ),
    Route(
        "PATCH",
        "/v1/tables/{table_id}/columns/{name}",
        WRITE,
        _on_table("PATCH", "/v1/tables/{t}/columns/age", {"name": "years"}),
    ),
    Route(
        "DELETE",
        "/v1/tables/{table_id}/columns/{name}",
        WRITE,
        _on_table("DELETE", "/v1/tables/{t}/columns/extra"),
    ),
    Route(
        "POST",
        "/v1/tables/{table_id}/indexes",
        WRITE,
        _on_table("POST", "/v1/tables/{t}/indexes", {"columns": ["name"]}),
    ),
    Route("DELETE", "/v1/tables/{table_id}/indexes/{name}", WRITE, _index_of),
    Route("GET", "/v1/tables/{table_id}/events", READ, _on_table("GET", "/v1/tables/{t}/events")),
    Route(
        "POST",
        "/v1/tables/{table_id}/reconcile",
        WRITE,
        _on_table("POST", "/v1/tables/{t}/reconcile", {"strategy": "repair"}),
    ),
    Route("GET", "/v1/operations/{operation_id}", READ, _operation),
    Route("POST", "/v1/operations/{operation_id}/undo", WRITE, _undo),
    Route("GET", "/v1/operations", READ, _plain("GET", "/v1/operations"), other_db="filtered"),
    # The global log holds every database's events: a token limited to some is refused.
    Route("GET", "/v1/events", READ, _plain("GET", "/v1/events")),
    Route("POST", "/v1/databases", ADMIN, _register),
    Route("GET", "/v1/databases", READ, _plain("GET", "/v1/databases"), other_db="filtered"),
    Route("GET", "/v1/databases/{name}", READ, lambda w, x: _database("GET", "", w, x)),
    Route("POST", "/v1/databases/{name}/check", WRITE, lambda w, x: _database("POST", "/check", w, x)),
    Route("DELETE", "/v1/databases/{name}", ADMIN, lambda w, x: _database("DELETE", "", w, x)),
    Route("GET", "/v1/databases/{name}/drift", READ, lambda w, x: _database("GET", "/drift", w, x)),
    Route("POST", "/v1/tokens", ADMIN, _new_token),
    Route("GET", "/v1/tokens", ADMIN, _plain("GET", "/v1/tokens")),
    Route("DELETE", "/v1/tokens/{name}", ADMIN, _token),
    Route("GET", "/v1/trash", READ, _plain("GET", "/v1/trash?database=default")),
    Route("GET", "/v1/trash/{trash_id}", READ, _on_trash("GET", "")),
    Route("POST", "/v1/trash/{trash_id}/restore", WRITE, _on_trash("POST", "/restore")),
    Route("DELETE", "/v1/trash/{trash_id}", WRITE, _on_trash("DELETE", "")),
    Route("POST", "/v1/webhooks", ADMIN, _new_webhook),
    Route("GET", "/v1/webhooks", ADMIN, _plain("GET", "/v1/webhooks")),
    Route("GET", "/v1/webhooks/{webhook_id}", ADMIN, lambda w, x: _webhook("GET", "", w, x)),
    Route("DELETE", "/v1/webhooks/{webhook_id}", ADMIN, lambda w, x: _webhook("DELETE", "", w, x)),
    Route(
        "GET",
        "/v1/webhooks/{webhook_id}/deliveries",
        ADMIN,
        lambda w, x: _webhook("GET", "/deliveries", w, x),
    ),
    # The live feed, ended after a moment (the in-process transport reads an answer whole).
    Route(
        "GET", "/v1/events/stream", READ, _plain("GET", "/v1/events/stream?timeout=0.3"), other_db="filtered"
    ),
    Route("GET", "/healthz", "open", _plain("GET", "/healthz")),
    # Not in the OpenAPI document: for probes, open too.
    Route("GET", "/readyz", "open", _plain("GET", "/readyz")),
    # For scrapers: its labels name every database, so a token limited to some is refused.
    Route("GET", "/metrics", READ, _plain("GET", "/metrics")),
]


@pytest.fixture(scope="module")
async def world(
    pg_server: str, core_template: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    core_name = create_database(pg_server, template=core_template)
    core = with_dbname(pg_server, core_name)
    folder = tmp_path_factory.mktemp("access")
    settings = fast_settings(
        database_url=core,
        byodb_url=f"sqlite:///{folder / 'default.sqlite3'}",
        sqlite_dir=folder,
        auth="required",
        webhook_allowed_hosts="127.0.0.1",
    )
    try:
        async with running_service(settings) as container:
            tokens: dict[str, str] = {}
            for caller, scope, databases in (
                (READ, "read", None),
                (WRITE, "write", None),
                (ADMIN, "admin", None),
                (OTHER, "admin", ["other"]),
            ):
                made = await container.tokens.create(
                    name=f"{caller.replace('_', '-')}-token", scope=scope, databases=databases, metadata={}
                )
                tokens[caller] = made.token
            transport = httpx.ASGITransport(app=container.web_app(with_worker=True))
            async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
                w = World(container, client, core, folder, tokens, keep="", keep_operation="")
                await w.admin("POST", "/v1/databases", {"name": "other", "url": w.sqlite("other")})
                w.keep = await w.fresh_table()
                w.keep_operation = (await w.admin("GET", f"/v1/operations?table_id={w.keep}")).json()[0][
                    "operation_id"
                ]
                # A table of `other`, which the limited token's listings show.
                accepted = (
                    await w.admin("POST", "/v1/tables", {"name": "theirs", "database": "other"})
                ).json()
                await w.settled(accepted["operation_url"])
                # /readyz counts the worker ready from its first heartbeat after it registered (within
                # a watchdog round, about a second): the table expects a ready service.
                for _ in range(100):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                yield w
    finally:
        drop_database(pg_server, core_name)


def test_the_table_covers_every_route_of_the_document() -> None:
    document = create_app(None).openapi()  # type: ignore[arg-type]
    declared = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert declared <= {(r.method, r.template) for r in ROUTES}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template}")
async def test_every_route_answers_each_caller_as_its_scope_says(
    world: World, route: Route, caller: str
) -> None:
    expected = route.expected(caller)
    succeeds = 200 <= expected < 300
    method, path, body = await route.build(world, succeeds and route.writes)
    request_id = f"access-{uuid.uuid4()}"
    headers = {**world.auth(caller), "X-Request-Id": request_id, "X-Actor": "someone"}
    before = world.stored()
    r = await world.client.request(method, path, json=body, headers=headers)
    assert r.status_code == expected, (caller, method, path, r.text)
    if succeeds:
        if route.writes and not path.endswith("/check"):  # a check records only a change of status
            assert world.events_of(request_id) > 0
        if caller == OTHER and route.other_db == "filtered":  # a listing of the limited token's database only
            if path.startswith("/v1/events/stream"):
                theirs = {
                    f"Table${t['table_id']}"
                    for t in (await world.admin("GET", "/v1/tables?database=other")).json()["items"]
                }
                streams = {e["stream"] for e in feed_events(r.text)}
                assert "Database$other" in streams and theirs <= streams
                assert streams <= {"Database$other", *theirs}
                return
            items = r.json()["items"] if isinstance(r.json(), dict) else r.json()
            assert items, path
            if path == "/v1/databases":
                assert {d["name"] for d in items} == {"other"}
            elif path == "/v1/tables":
                assert {t["database"] for t in items} == {"other"}
            else:
                theirs = {
                    t["table_id"]
                    for t in (await world.admin("GET", "/v1/tables?database=other")).json()["items"]
                }
                assert {o["table_id"] for o in items} <= theirs
        return
    error_of(r)  # the shape of its path
    if expected == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert error_of(r)["code"] == "unauthenticated"
    else:
        assert error_of(r)["code"] == "forbidden"
    assert world.events_of(request_id) == 0
    assert world.stored() == before


def feed_events(text: str) -> list[dict[str, Any]]:
    parser = SseParser()
    return [e.model_dump(mode="json") for e in parser.feed(text.split("\n"))]


def token_events(w: World, name: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The events of the token's stream: type, data, metadata."""
    with psycopg.connect(w.core) as conn:
        rows = conn.execute(
            "SELECT e.event_type, e.data, e.metadata FROM event_store_events e "
            "JOIN event_store_events_in_streams s USING (event_id) WHERE s.stream = %s ORDER BY s.version",
            (f"Token${name}",),
        ).fetchall()
    return [(str(t), dict(d), dict(m)) for t, d, m in rows]


async def test_a_token_is_shown_once_stored_hashed_and_refused_once_revoked(world: World) -> None:
    w = world
    r = await w.client.post(
        "/v1/tokens",
        json={"name": "ci-bot", "scope": "write", "databases": ["other"]},
        headers={**w.auth(ADMIN), "X-Actor": "ops"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    created = r.json()
    token = created["token"]
    assert token.startswith("ssg_") and len(token) > 60
    assert {k: created[k] for k in ("name", "scope", "databases", "revoked_at")} == {
        "name": "ci-bot",
        "scope": "write",
        "databases": ["other"],
        "revoked_at": None,
    }
    listed = await w.admin("GET", "/v1/tokens")
    assert token not in listed.text
    (item,) = [t for t in listed.json()["items"] if t["name"] == "ci-bot"]
    assert "token" not in item
    # Stored hashed: neither the token nor its secret part is in the core database.
    # ssg_<16 hex>_<secret>; the secret is URL-safe base64 and may itself hold "_".
    secret = token.split("_", 2)[2]
    assert len(secret) >= 40
    with psycopg.connect(w.core) as conn:
        dump = conn.execute(
            "SELECT (SELECT string_agg(t::text, ' ') FROM api_tokens t)"
            " || (SELECT string_agg(e::text, ' ') FROM event_store_events e)"
        ).fetchone()
    assert dump is not None and secret not in dump[0]

    mine = {"Authorization": f"Bearer {token}"}
    assert (await w.client.get("/v1/tables", headers=mine)).status_code == 200
    assert (await w.client.get("/v1/tokens", headers=mine)).status_code == 403
    # One character off: unknown.
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await w.client.get("/v1/tables", headers={"Authorization": f"Bearer {wrong}"})).status_code == 401

    assert (await w.client.delete("/v1/tokens/ci-bot", headers=w.auth(ADMIN))).status_code == 200
    refused = await w.client.get("/v1/tables", headers=mine)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await w.client.delete("/v1/tokens/ci-bot", headers=w.auth(ADMIN))).status_code == 404
    again = await w.client.post("/v1/tokens", json={"name": "ci-bot", "scope": "read"}, headers=w.auth(ADMIN))
    assert again.status_code == 409
    for bad in ({"name": "Bad Name", "scope": "read"}, {"name": "ok", "scope": "root"}):
        assert (await w.client.post("/v1/tokens", json=bad, headers=w.auth(ADMIN))).status_code == 422

    events = token_events(w, "ci-bot")
    assert [(t, m["actor"], m.get("actor_note")) for t, _, m in events] == [
        ("TokenCreated", "admin-token", "ops"),
        ("TokenRevoked", "admin-token", None),
    ]
    assert events[0][1] == {
        "name": "ci-bot",
        "scope": "write",
        "databases": ["other"],
        "lookup_id": token.split("_")[1],
    }


async def test_the_actor_of_each_event_is_the_token_and_x_actor_only_a_note(world: World) -> None:
    w = world
    headers = {**w.auth(WRITE), "X-Actor": "alice"}
    r = await w.client.post("/table/create", json={"name": w.name("acted")}, headers=headers)
    assert r.status_code == 200, r.text
    table_id = r.json()["table"]["table_id"]
    events = (await w.client.get(f"/v1/tables/{table_id}/events", headers=w.auth(READ))).json()
    created = events[0]
    assert created["event_type"] == "TableCreated"
    assert created["metadata"]["actor"] == "write-token"
    assert created["metadata"]["actor_note"] == "alice"


def _with(w: World, **settings: Any) -> httpx.AsyncClient:
    """A client of the module's service with other access settings."""
    container = replace(w.container, settings=w.container.settings.model_copy(update=settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=container.web_app()), base_url="http://x")


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("LOCALHOST", 200),
        ("evil.example", 400),
        ("evil.example:8000", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.1.nip.io", 400),
    ],
)
async def test_on_loopback_only_the_loopback_host_names_are_answered(
    world: World, host: str, status: int
) -> None:
    """A page of another site whose name was rebound to 127.0.0.1 sends its own name: refused before
    anything, a valid token or not."""
    async with _with(world, allowed_hosts="", host="127.0.0.1") as client:
        r = await client.get("/healthz", headers={"Host": host})
        assert r.status_code == status, r.text
        before = world.stored()
        r = await client.post(
            "/v1/tables", json={"name": world.name("rebound")}, headers={**world.auth(ADMIN), "Host": host}
        )
        assert r.status_code == (202 if status == 200 else 400), r.text
        if status == 400:
            assert error_of(r)["code"] == "host_not_allowed"
            assert "x-request-id" in r.headers
            assert world.stored() == before


async def test_cors_answers_only_the_configured_origins(world: World) -> None:
    preflight = {"Origin": "https://console.example", "Access-Control-Request-Method": "POST"}
    async with _with(world) as client:  # not configured: no CORS at all
        r = await client.options("/v1/tables", headers={**preflight, "Host": "localhost"})
        assert "access-control-allow-origin" not in r.headers
    async with _with(world, cors_origins="https://console.example") as client:
        r = await client.options("/v1/tables", headers={**preflight, "Host": "localhost"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://console.example"
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = await client.options(
            "/v1/tables", headers={**preflight, "Origin": "https://evil.example", "Host": "localhost"}
        )
        assert "access-control-allow-origin" not in r.headers


async def test_tokens_from_the_cli_are_printed_once_listed_without_secret_and_revoked(world: World) -> None:
    w = world
    env = {"SCHEMASAGA_DATABASE_URL": w.core}

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(
            CliRunner().invoke, main, ["tokens", *args], env=env, catch_exceptions=False
        )

    made = await cli(
        "create", "--name", "deploy", "--scope", "read", "--database", "other", "--database", "default"
    )
    assert made.exit_code == 0, made.output
    token = made.output.splitlines()[-1]
    assert token.startswith("ssg_")
    assert made.output.count(token) == 1
    mine = {"Authorization": f"Bearer {token}"}
    assert (await w.client.get("/v1/databases/other", headers=mine)).status_code == 200
    assert (await w.client.post("/table/create", json={"name": "nope"}, headers=mine)).status_code == 403

    listed = await cli("list")
    assert listed.exit_code == 0
    assert token not in listed.output and token.rsplit("_", 1)[1] not in listed.output
    (line,) = [x for x in listed.output.splitlines() if x.startswith("deploy ")]
    assert line.split()[1:3] == ["read", "default,other"]
    assert line.split()[-1] == "-"

    assert (await cli("create", "--name", "deploy", "--scope", "read")).exit_code == 1
    revoked = await cli("revoke", "deploy")
    assert revoked.exit_code == 0, revoked.output
    assert (await w.client.get("/v1/databases/other", headers=mine)).status_code == 401
    (line,) = [x for x in (await cli("list")).output.splitlines() if x.startswith("deploy ")]
    assert line.split()[-1] != "-"
    again = await cli("revoke", "deploy")
    assert again.exit_code == 1 and "no live token named 'deploy'" in again.output
    assert [t for t, _, m in token_events(w, "deploy")] == ["TokenCreated", "TokenRevoked"]


async def test_a_request_without_a_token_is_told_nothing_of_its_body(world: World) -> None:
    for body in ({"bogus": 1}, {"name": "Not A Valid Name!"}):
        r = await world.client.post("/v1/tables", json=body)
        assert r.status_code == 401, r.text
    for path in ("/v1/tables", "/table/create"):
        r = await world.client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 401, r.text
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await world.client.post(
        "/v1/tables", content=b"{not json", headers={**world.auth(READ), "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text  # with a token: what is wrong with it
    r = await world.client.post("/v1/tables", json={"bogus": 1}, headers=world.auth(READ))
    assert r.status_code == 403, r.text
    r = await world.client.post(
        "/v1/tables", json={"bogus": 1}, headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert r.status_code == 401, r.text


CONSOLE_PAGES = ("/console", "/console/operations", "/console/events", "/console/databases")


@pytest.mark.parametrize("caller", CALLERS)
async def test_the_console_needs_a_read_token_that_no_database_limits(world: World, caller: str) -> None:
    # It shows every database's tables and events: a token limited to one would see the others'.
    # Without a token, a browser is sent to the sign-in form, and back to the page after it.
    expected = {NONE: 303, OTHER: 403}.get(caller, 200)
    for page in (*CONSOLE_PAGES, f"/console/tables/{world.keep}"):
        r = await world.client.get(page, headers=world.auth(caller), follow_redirects=False)
        assert r.status_code == expected, (caller, page, r.text[:200])
        if expected != 200:
            assert "theirs" not in r.text and world.keep not in r.text
        if expected == 303:
            assert r.headers["location"] == "/console/login?" + urlencode({"next": page})


async def test_the_console_signs_in_with_a_token_in_an_http_only_strict_cookie(world: World) -> None:
    transport = httpx.ASGITransport(app=world.container.web_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as browser:
        form = await browser.get("/console/login?next=/console/events")
        assert form.status_code == 200 and 'type="password"' in form.text
        csrf = browser.cookies["schemasaga_csrf"]
        assert (
            "httponly" in form.headers["set-cookie"].lower()
            and "samesite=strict" in form.headers["set-cookie"].lower()
        )
        assert f'name="csrf" value="{csrf}"' in form.text

        # A wrong token, a token limited to one database, a form without the CSRF token: refused.
        r = await browser.post("/console/login", data={"csrf": csrf, "token": "ssg_nope_nope"})
        assert r.status_code == 401 and "unknown or revoked" in r.text
        r = await browser.post("/console/login", data={"csrf": csrf, "token": world.tokens[OTHER]})
        assert r.status_code == 401 and "every database" in r.text
        r = await browser.post("/console/login", data={"csrf": "forged" * 5, "token": world.tokens[READ]})
        assert r.status_code == 403 and "schemasaga_console" not in browser.cookies

        # A read token: the cookie (HttpOnly, SameSite=Strict), and back to the page asked for.
        r = await browser.post(
            "/console/login",
            data={"csrf": csrf, "token": world.tokens[READ], "next": "https://evil.example/x"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/console"  # never another host
        cookie = r.headers["set-cookie"].lower()
        assert "schemasaga_console=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert (await browser.get(f"/console/tables/{world.keep}")).status_code == 200
        # It reads; it may not write: the form's refusal, nothing created.
        before = world.stored()
        r = await browser.post("/console/tables", data={"csrf": csrf, "name": "from_a_reader"})
        assert r.status_code == 403 and world.stored() == before

        r = await browser.post("/console/logout", data={"csrf": csrf})
        assert r.status_code == 303 and "schemasaga_console" not in browser.cookies
        assert (await browser.get("/console")).status_code == 303
