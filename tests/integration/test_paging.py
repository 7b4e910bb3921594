"""Keyset paging of every list: a reader following the `Link: rel="next"` headers while rows are being
added sees each row once and every row that was there when it began; bad cursors are 422; each page query
is an index scan on a filled core database (EXPLAIN), never a sort of the whole list nor an OFFSET."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from schemasaga.bootstrap import Container
from schemasaga.sql import queries
from tests.conftest import error_of
from tests.integration.conftest import wait_synced
from tests.integration.test_saga_flow import create_table

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


def _next_url(response: httpx.Response) -> str | None:
    match = _NEXT.fullmatch(response.headers.get("link", ""))
    return match.group(1) if match else None


async def walk(
    client: httpx.AsyncClient,
    url: str,
    key: Callable[[dict[str, Any]], Any],
    *,
    between: Callable[[], Awaitable[None]] | None = None,
) -> list[Any]:
    """Every item of the list at ``url`` by following its Link headers, calling ``between`` after each
    page; the items' keys, in the order read."""
    seen: list[Any] = []
    next_url: str | None = url
    while next_url is not None:
        r = await client.get(next_url)
        assert r.status_code == 200, r.text
        body = r.json()
        items = body if isinstance(body, list) else body["items"]
        if not isinstance(body, list):
            # The body's cursor and the header's agree.
            assert (body["next_after"] is None) == (_next_url(r) is None), (body, r.headers)
        seen.extend(key(i) for i in items)
        next_url = _next_url(r)
        if between is not None:
            await between()
    return seen


async def test_walking_tables_and_the_global_log_while_tables_are_added(
    client: httpx.AsyncClient, service: Container
) -> None:
    for i in range(7):
        await create_table(client, f"first_{i}")
    before = {t["table_id"] for t in (await client.get("/v1/tables?limit=1000")).json()["items"]}
    log_before = {e["event_id"] for e in (await client.get("/v1/events?limit=1000")).json()["items"]}
    added: list[str] = []

    async def add_one() -> None:
        if len(added) < 8:  # a few, so that the walk ends
            added.append(await create_table(client, f"later_{len(added)}"))

    seen = await walk(client, "/v1/tables?limit=3", lambda t: t["table_id"], between=add_one)
    assert len(seen) == len(set(seen)), "a table was seen twice"
    assert before <= set(seen), "a table there from the start was skipped"
    assert len(before) == 7 and len(added) >= 3

    # The global log, walked while tables are created and the worker confirms them (appends from
    # several transactions at once): each event once, in the order of the pages, none skipped.
    events = await walk(client, "/v1/events?limit=4", lambda e: e["event_id"], between=add_one)
    assert len(events) == len(set(events)), "an event was seen twice"
    assert log_before <= set(events)
    for table_id in added:
        await wait_synced(client, table_id)
    # Walking on from the last event read sees exactly what was appended since.
    r = await client.get(f"/v1/events?after={events[-1]}&limit=1000")
    later = [e["event_id"] for e in r.json()["items"]]
    everything = [e["event_id"] for e in (await client.get("/v1/events?limit=1000")).json()["items"]]
    assert events + later == everything


async def test_walking_a_tables_events_and_the_operations_while_changes_are_made(
    client: httpx.AsyncClient, service: Container
) -> None:
    table_id = await create_table(client, "walked")
    await wait_synced(client, table_id)
    columns = iter(f"c{i}" for i in range(100))
    changes = 0

    async def change() -> None:
        nonlocal changes
        if changes >= 4:  # a few, so that the walk ends
            return
        changes += 1
        body = {"table_id": table_id, "column": {"name": next(columns), "type": "integer"}}
        assert (await client.post("/table/column", json=body)).status_code == 200
        await wait_synced(client, table_id)

    await change()
    changes = 0
    at_start = len((await client.get(f"/v1/tables/{table_id}/events?limit=1000")).json())
    versions = await walk(
        client, f"/v1/tables/{table_id}/events?limit=2", lambda e: e["version"], between=change
    )
    assert versions == list(range(len(versions))), "versions skipped or seen twice"
    everything = (await client.get(f"/v1/tables/{table_id}/events?limit=1000")).json()
    # Changes made during the walk (each settled before the next page) are read too, once.
    assert [e["version"] for e in everything] == versions and len(versions) > at_start

    changes = 0
    ops_before = [o["operation_id"] for o in (await client.get("/v1/operations?limit=1000")).json()]
    seen = await walk(client, "/v1/operations?limit=2", lambda o: o["operation_id"], between=change)
    assert len(seen) == len(set(seen))
    # Newest first: the operations there at the start, in the same order, none skipped.
    assert [o for o in seen if o in ops_before] == ops_before
    filtered = await walk(client, f"/v1/operations?table_id={table_id}&limit=2", lambda o: o["operation_id"])
    assert len(filtered) == len(set(filtered)) and set(seen) <= set(filtered)


async def test_databases_and_tokens_are_paged(
    client: httpx.AsyncClient, service: Container, tmp_path: Any
) -> None:
    for name in ("files_a", "files_b", "files_c"):
        url = f"sqlite:///{tmp_path / name}.db"
        r = await client.post("/v1/databases", json={"name": name, "url": url})
        assert r.status_code == 201, r.text
    names = await walk(client, "/v1/databases?limit=2", lambda d: d["name"])
    assert names == sorted(names) and {"files_a", "files_b", "files_c"} <= set(names)
    assert len(names) == len(set(names)) == len((await client.get("/v1/databases")).json()["items"])

    for i in range(5):
        r = await client.post("/v1/tokens", json={"name": f"tok_{i}", "scope": "read"})
        assert r.status_code == 201, r.text
    tokens = await walk(client, "/v1/tokens?limit=2", lambda t: t["name"])
    assert tokens == [f"tok_{i}" for i in range(5)]
    r = await client.get("/v1/tokens?limit=2&after=tok_3")
    assert [t["name"] for t in r.json()["items"]] == ["tok_4"] and r.json()["next_after"] is None
    assert "link" not in r.headers


BAD = [
    ("/v1/tables?after=nope", "invalid_request"),
    ("/v1/events?after=00000000-0000-0000-0000-000000000000", "invalid_cursor"),
    ("/v1/events?after=12", "invalid_request"),
    ("/v1/operations?after=00000000-0000-0000-0000-000000000000", "invalid_cursor"),
    ("/v1/operations?after=12", "invalid_request"),
    ("/v1/tables?limit=0", "invalid_request"),
    ("/v1/databases?limit=1001", "invalid_request"),
    ("/v1/tokens?limit=-1", "invalid_request"),
]


async def test_bad_cursors_are_422(client: httpx.AsyncClient, service: Container) -> None:
    table_id = await create_table(client, "cursored")
    for url, code in [
        *BAD,
        *((f"/v1/tables/{table_id}/events?after={a}", "invalid_request") for a in ("-1", "x")),
    ]:
        r = await client.get(url)
        assert r.status_code == 422, (url, r.text)
        assert error_of(r)["code"] == code, url
    # Past the end: an empty page, not a 404 (the table is there).
    r = await client.get(f"/v1/tables/{table_id}/events?after=1000")
    assert r.status_code == 200 and r.json() == [] and "link" not in r.headers
    r = await client.get("/v1/tables/00000000-0000-0000-0000-000000000000/events?after=3")
    assert r.status_code == 404


# -- EXPLAIN on a filled core database ------------------------------------------------------------

_FILL = """
INSERT INTO rm_databases (name, engine, url_encrypted, key_id, display, source, status, version,
                          created_at, updated_at)
SELECT 'db' || d, 'postgresql', 'x', 'k', '{}', 'api', 'ok', 1, now(), now() FROM generate_series(1, 50) d;
INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, columns, version, created_at,
                       updated_at)
SELECT md5(i::text)::uuid, 'db' || CASE WHEN i % 10 = 0 THEN i % 50 + 1 ELSE 7 END, 't' || i,
       true, true, '[]', 1, now(), now()
FROM generate_series(1, 20000) i;
INSERT INTO rm_operations (operation_id, table_id, kind, status, accepted_seq, created_at, updated_at)
SELECT md5('op' || i)::uuid, md5((CASE WHEN i % 2 = 0 THEN 1 ELSE i % 20000 + 1 END)::text)::uuid,
       'create_table',
       CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'completed' END, i, now(), now()
FROM generate_series(1, 40000) i;
INSERT INTO event_store_events (event_id, event_type, data, metadata)
SELECT md5('ev' || i)::uuid, 'TableCreated', '{}', '{}' FROM generate_series(1, 40000) i;
INSERT INTO event_store_events_in_streams (stream, version, event_id)
SELECT 'Table$' || md5((i % 20000 + 1)::text)::uuid, i / 20000, md5('ev' || i)::uuid
FROM generate_series(1, 40000) i;
INSERT INTO api_tokens (name, lookup_id, secret_hash, scope)
SELECT 'token' || i, 'l' || i, 'h', 'read' FROM generate_series(1, 5000) i;
ANALYZE;
"""

_PAGES: list[tuple[str, str, dict[str, Any]]] = [
    ("views", "list_tables", {"database": None, "databases": None, "include_deleted": False,
                              "include_trashed": False, "status": None,
                              "after": "80000000-0000-0000-0000-000000000000", "name_prefix": None,
                              "limit": 100}),
    ("views", "list_tables", {"database": "db7", "databases": ["db7"], "include_deleted": False,
                              "include_trashed": False, "status": None,
                              "after": None, "name_prefix": None, "limit": 100}),
    ("views", "list_operations", {"table_id": None, "status": None, "databases": None,
                                  "after_seq": 20000, "limit": 100}),
    ("views", "list_operations", {"table_id": "c4ca4238-a0b9-2382-0dcc-509a6f75849b", "status": None,
                                  "databases": None, "after_seq": 30000, "limit": 100}),
    ("views", "list_databases", {"name": None, "databases": None, "after": "db20", "limit": 10}),
    ("tokens", "list_tokens", {"after": "token2500", "limit": 100}),
    ("eventstore", "read_stream_forward", {"stream": "Table$c4ca4238-a0b9-2382-0dcc-509a6f75849b",
                                           "from_version": 1, "to_version": 2**31 - 1, "limit": 100}),
    ("eventstore", "follow", {"tx_id": "0", "position": 20000, "limit": 100}),
]  # fmt: skip


async def test_every_page_is_an_index_scan_on_a_filled_database(service: Container) -> None:
    async with service.pool.connection() as conn:
        await conn.execute(_FILL)
        for group, name, params in _PAGES:
            query = queries(group)[name]
            # Planned with the actual values, as the pool's prepared statements are at first.
            rows = await (await conn.execute("EXPLAIN " + query, params, prepare=False)).fetchall()
            plan = "\n".join(r[0] for r in rows)
            assert "Seq Scan" not in plan, f"{group}.{name} reads the whole table:\n{plan}"
            # No sort of the whole list under the LIMIT (a sort of one event's stream rows is fine).
            assert not re.search(r"^(  ->  )?Sort\b", plan, re.M), f"{group}.{name} sorts:\n{plan}"
            assert "Index" in plan, plan
