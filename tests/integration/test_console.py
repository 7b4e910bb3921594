"""The web console (read-only): every page renders what the read side holds, escapes what users wrote,
marks what is in flight (and only then reloads itself), and loads nothing from another host."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import quote

import httpx

from schemasaga.config import Settings
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.test_saga_flow import run_sql

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PAGES = ("/console", "/console/operations", "/console/events", "/console/databases")


class Chain(HTMLParser):
    """The causation chain of an event page: each event link of the tree with its nesting depth, and the
    event marked as the page's own."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.inside = False
        self.nodes: list[tuple[int, str]] = []
        self.current: str | None = None
        self._href: str | None = None
        self._current_li = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "ol" and values.get("id") == "causation":
            self.inside = True
        if not self.inside:
            return
        if tag == "ol":
            self.depth += 1
        if tag == "li":
            self._current_li = values.get("aria-current") == "true"
        if tag == "a" and (values.get("href") or "").startswith("/console/events/"):
            self._href = values["href"]

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.nodes.append((self.depth, data))
            if self._current_li:
                self.current = data
            self._href = None
            self._current_li = False

    def handle_endtag(self, tag: str) -> None:
        if self.inside and tag == "ol":
            self.depth -= 1
            self.inside = self.depth > 0


class Links(HTMLParser):
    """Every URL a page refers to (src, href, action), and whether it carries a refresh."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.refresh = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action") and v is not None]
        if tag == "meta" and (values.get("http-equiv") or "").lower() == "refresh":
            self.refresh = True


def parsed(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


async def page(client: httpx.AsyncClient, path: str) -> str:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    if path.startswith("/console"):
        assert "script-src 'self';" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    links = parsed(r.text)
    # Nothing from another host (no CDN, font or script), and no URL that could lead to one.
    assert all(not url.startswith(("http:", "https:", "//")) for url in links.urls), links.urls
    return r.text


async def accepted(r: httpx.Response, client: httpx.AsyncClient) -> str:
    assert r.status_code == 202, r.text
    operation = await wait_operation(client, r.json()["operation_id"])
    assert operation["status"] == "completed", operation["last_error"]
    return str(r.json()["operation_id"])


async def test_every_page_shows_a_created_table_and_its_added_column(client: httpx.AsyncClient) -> None:
    hostile = {"x-actor": SCRIPT}
    body = {"name": "people", "columns": [{"name": "motto", "type": "string", "default": SCRIPT}]}
    r = await client.post("/v1/tables", json=body, headers=hostile)
    table_id = r.json()["table_id"]
    created = await accepted(r, client)
    before_column = (await wait_synced(client, table_id))["version"]
    r = await client.post(f"/v1/tables/{table_id}/columns", json={"name": "age", "type": "integer"})
    added = await accepted(r, client)
    now = (await wait_synced(client, table_id))["version"]

    r = await client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console"

    tables = await page(client, "/console")
    assert f'href="/console/tables/{table_id}">people</a>' in tables
    assert "synced" in tables and "default" in tables and "postgresql" in tables
    assert "people" in await page(client, "/console?prefix=peo&database=default")
    assert "people" not in await page(client, "/console?prefix=zz")

    assert "people" in await page(client, "/console?status=synced")
    assert "people" not in await page(client, "/console?status=in_flight")
    # The moment picker: the whole system then; before `people` began, no tables at all.
    events = (await client.get(f"/v1/tables/{table_id}/events")).json()
    first = events[0]["created_at"]
    assert f'href="/console/tables/{table_id}">people</a>' in await page(client, f"/console?at={first}")
    assert "No tables" in await page(client, "/console?at=2001-01-01T00:00:00")
    r = await client.get("/console?at=not-a-moment")
    assert r.status_code == 400 and "not-a-moment" in r.text

    table = await page(client, f"/console/tables/{table_id}")
    assert '<th scope="row"><code>age</code></th>' in table
    assert "being added" not in table
    # The timeline: who (escaped), what, which operation, the outcome.
    assert "TableCreated" in table and "TableChangeConfirmed" in table and "confirmed" in table
    assert created in table and added in table
    assert f"by {ESCAPED}" in table

    # As it was before the column was added: no `age`, and the difference with now says so.
    past = await page(client, f"/console/tables/{table_id}?version={before_column}")
    assert '<th scope="row"><code>age</code></th>' not in past
    assert '<th scope="row"><code>motto</code></th>' in past
    assert "Column <code>age</code> added since" in past
    assert f"against the current version {now}" in past
    # The physical DDL of the shape shown, for its engine: `age` in the current one only.
    assert "CREATE TABLE &#34;people&#34;" in table and "&#34;age&#34; INTEGER" in table
    assert "CREATE TABLE &#34;people&#34;" in past and "&#34;age&#34;" not in past
    # Any two versions: from now back to before the column, `age` was removed.
    back = await page(client, f"/console/tables/{table_id}?version={now}&against={before_column}")
    assert "Column <code>age</code> removed since" in back and f"against version {before_column}" in back

    operations = await page(client, "/console/operations")
    assert created in operations and added in operations and "completed" in operations
    assert f'href="/console/tables/{table_id}"' in operations

    events = await page(client, "/console/events")
    assert events.index("TableChangeConfirmed") < events.index("TableCreated")  # newest first
    event_ids = [u.rsplit("/", 1)[1] for u in parsed(events).urls if u.startswith("/console/events/")]
    creation = next(e for e in event_ids if f'href="/console/events/{e}">TableCreated<' in events)
    event = await page(client, f"/console/events/{creation}")
    assert f'href="/console/tables/{table_id}"' in event  # its stream
    assert "&#34;correlation_id&#34;" in event  # the metadata, as JSON text
    # The other events of the creation's request and saga share its correlation id.
    assert "TableCreationConfirmed" in event

    # The causation chain of the column's change: the request, then each event below its cause, down to
    # the saga's outcome; the page's own event marked.
    column_events = await page(client, f"/console/events?correlation={added}")
    changed = next(u for u in parsed(column_events).urls if f'href="{u}">TableChanged<' in column_events)
    chain = Chain()
    chain.feed(await page(client, changed))
    kinds = [kind for _, kind in chain.nodes]
    assert (
        kinds[0] == "TableChanged" and kinds[-1] == "TableChangeConfirmed" and chain.current == "TableChanged"
    )
    depths = [depth for depth, _ in chain.nodes]
    assert depths == sorted(depths) and depths[-1] > depths[0]  # a chain: each caused by the one before
    assert "TableCreated" not in kinds  # another request's

    poll = (await client.get("/console/poll")).json()
    assert poll["in_flight"] is False and poll["position"] > 0

    databases = await page(client, "/console/databases")
    assert "default" in databases and "postgresql" in databases
    assert 'href="/v1/databases/default/drift"' in databases
    assert 'href="/console/databases/default/drift"' in databases
    assert 'action="/console/databases/default/check"' in databases
    assert "://" not in databases  # no URL, so no password either

    for html in (tables, table, past, operations, events, event, databases):
        assert SCRIPT not in html
        assert not parsed(html).refresh  # nothing in flight
    assert ESCAPED in event and ESCAPED in table  # the column default and the actor, as text


async def test_unknown_things_answer_a_page_that_says_so(client: httpx.AsyncClient) -> None:
    for path in (
        "/console/tables/00000000-0000-0000-0000-000000000000",
        "/console/events/00000000-0000-0000-0000-000000000000",
    ):
        r = await client.get(path)
        assert r.status_code == 404 and "No " in r.text and r.headers["content-type"].startswith("text/html")
    r = await client.get("/console/static/console.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    # The API's pages load their scripts from this service, never from a CDN.
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = await page(client, path)
        assert f"/docs/static/{asset}" in html and "cdn" not in html and "fonts.googleapis" not in html
        r = await client.get(f"/docs/static/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert len(r.content) > 100_000
    assert (await client.get("/docs/static/../../secrets")).status_code == 404
    # The JSON API's contract is unchanged: no console route in it.
    spec = (await client.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p == "/" or p.startswith("/console")]


async def test_a_change_in_flight_is_marked_and_its_pages_reload_until_it_is_done(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    settings = settings_factory(byodb_pg_url)
    async with running_service(settings) as service:
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            r = await client.post("/v1/tables", json={"name": "settled"})
            settled = r.json()["table_id"]
            await accepted(r, client)
    # No worker from here on: what is accepted stays in flight for as long as the test looks at it.
    async with running_service(settings, worker=False) as service:
        transport = httpx.ASGITransport(app=service.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as client:
            r = await client.patch(f"/v1/tables/{settled}/columns/name", json={"name": "label"})
            assert r.status_code == 202, r.text
            r = await client.delete(f"/v1/tables/{settled}/columns/updated_at")
            assert r.status_code == 202, r.text
            table = await page(client, f"/console/tables/{settled}")
            assert '<th scope="row"><code>label</code></th>' in table
            assert "being renamed from name" in table and "being removed" in table
            assert "being added" not in table and parsed(table).refresh

            ids = set()
            for name in ("pending_one", "pending_two"):
                r = await client.post("/v1/tables", json={"name": name})
                assert r.status_code == 202, r.text
                ids.add(r.json()["table_id"])
            table_id = min(ids)
            table = await page(client, f"/console/tables/{table_id}")
            assert parsed(table).refresh
            assert "being added" in table and "in flight" in table
            for path in ("/console", "/console/operations", "/console/events"):
                assert parsed(await page(client, path)).refresh, path
            # What a following page polls: the newest event's position, and that something is in flight.
            newest = (await client.get("/console/events?limit=1")).text
            poll = (await client.get("/console/poll")).json()
            assert poll["in_flight"] is True and f'<td class="num">{poll["position"]}</td>' in newest
            assert not parsed(await page(client, "/console/databases")).refresh

            # Keyset paging: one table a page, the second page from the first's last table on.
            first = parsed(await page(client, "/console?limit=1&prefix=pending_"))
            [next_page] = [u for u in first.urls if "after=" in u]
            second = parsed(await page(client, next_page))
            shown = [u for p in (first, second) for u in p.urls if u.startswith("/console/tables/")]
            assert sorted(shown) == sorted(f"/console/tables/{i}" for i in ids)
            # The log too, newest first, one event a page, by position.
            first = parsed(await page(client, "/console/events?limit=1"))
            [older] = [u for u in first.urls if "before=" in u]
            second = parsed(await page(client, older))
            events = [u for p in (first, second) for u in p.urls if u.startswith("/console/events/")]
            assert len(set(events)) == 2


async def test_status_filters_tell_deleted_tables_from_rejected_creations(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    """A table whose creation was rejected never was: the `deleted` filter leaves it out and the
    `rejected` one shows it, now and at a moment (`?at=`), where a trashed table is shown trashed."""
    ids = {}
    for name in ("kept", "gone"):
        r = await client.post("/v1/tables", json={"name": name})
        await accepted(r, client)
        ids[name] = r.json()["table_id"]
    await accepted(await client.delete(f"/v1/tables/{ids['gone']}"), client)
    # An index name the database has already: the creation fails and is rejected.
    run_sql(byodb_pg_url, "CREATE TABLE unmanaged (x integer)", "CREATE INDEX taken ON unmanaged (x)")
    body = {"name": "clash", "indexes": [{"columns": ["name"], "name": "taken"}]}
    r = await client.post("/v1/tables", json=body)
    assert r.status_code == 202, r.text
    operation = await wait_operation(client, r.json()["operation_id"])
    assert operation["status"] == "rejected"
    moment = (await client.get(f"/v1/tables/{r.json()['table_id']}/events")).json()[-1]["created_at"]

    for at in ("", f"&at={quote(moment)}"):
        shown = {
            status: {name for name in ("kept", "gone", "clash") if f">{name}</a>" in html}
            for status in ("synced", "deleted", "trashed", "rejected")
            for html in [await page(client, f"/console?status={status}{at}")]
        }
        assert shown == {
            "synced": {"kept"},
            "deleted": {"gone"},
            "trashed": {"gone"},
            "rejected": {"clash"},
        }, (at, shown)
