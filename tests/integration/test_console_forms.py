"""The console's forms: each goes through the same commands as the API, carries the CSRF token, shows a
refusal with the API's status and writes nothing then; drift is shown with repair and adopt buttons."""

from __future__ import annotations

import re

import httpx
import psycopg

from schemasaga.bootstrap import Container
from tests.integration.conftest import wait_synced
from tests.integration.test_saga_flow import physical_columns, run_sql


def counts(service: Container) -> tuple[int, int]:
    """Events and operations: what any accepted change writes."""
    with psycopg.connect(service.settings.database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM event_store_events), (SELECT count(*) FROM rm_operations)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/console")
    token = client.cookies["schemasaga_csrf"]
    assert f'name="csrf" value="{token}"' in page.text
    return token


async def test_create_add_and_remove_through_the_forms(client: httpx.AsyncClient, service: Container) -> None:
    csrf = await csrf_of(client)

    # Refusals: no CSRF token, a forged one, a bad name; each shown, nothing written.
    before = counts(service)
    r = await client.post("/console/tables", data={"name": "people"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = await client.post("/console/tables", data={"name": "people", "csrf": "x" * 43})
    assert r.status_code == 403
    r = await client.post("/console/tables", data={"name": "<b>1bad</b>", "csrf": csrf})
    assert r.status_code == 422 and "&lt;b&gt;1bad&lt;/b&gt;" in r.text and "<b>1bad" not in r.text
    assert counts(service) == before

    r = await client.post("/console/tables", data={"name": "people", "csrf": csrf})
    assert r.status_code == 303
    table_url = r.headers["location"]
    table_id = table_url.rsplit("/", 1)[1]
    await wait_synced(client, table_id)
    # The same name again: the API's 409, on the form.
    r = await client.post("/console/tables", data={"name": "people", "csrf": csrf})
    assert r.status_code == 409

    r = await client.post(
        f"{table_url}/columns", data={"csrf": csrf, "name": "age", "type": "integer", "default": "7"}
    )
    assert r.status_code == 303 and r.headers["location"] == table_url
    table = await wait_synced(client, table_id)
    assert table["columns"]["age"]["type"] == "integer" and table["columns"]["age"]["default"] == 7
    assert table["columns"]["age"]["nullable"] is False  # the box left unticked
    # A type the API does not know, a default of the wrong type: refused as the API refuses them.
    before = counts(service)
    r = await client.post(f"{table_url}/columns", data={"csrf": csrf, "name": "x", "type": "blob"})
    assert r.status_code == 422 and "blob" in r.text
    r = await client.post(
        f"{table_url}/columns", data={"csrf": csrf, "name": "x", "type": "integer", "default": "abc"}
    )
    assert r.status_code == 422
    assert counts(service) == before

    page = (await client.get(table_url)).text
    assert (
        f'action="{table_url}/columns/age/remove"' in page and 'data-confirm="Remove the column age' in page
    )
    assert f'action="{table_url}/columns/id/remove"' not in page  # never the primary key
    r = await client.post(f"{table_url}/columns/age/remove", data={"csrf": csrf})
    assert r.status_code == 303
    assert "age" not in (await wait_synced(client, table_id))["columns"]


async def test_drift_is_shown_and_adopted_from_the_console(
    client: httpx.AsyncClient, byodb_pg_url: str
) -> None:
    csrf = await csrf_of(client)
    r = await client.post("/console/tables", data={"name": "drifty", "csrf": csrf})
    table_id = r.headers["location"].rsplit("/", 1)[1]
    await wait_synced(client, table_id)
    assert "No drift" in (await client.get("/console/databases/default/drift")).text

    run_sql(byodb_pg_url, "ALTER TABLE drifty ADD COLUMN extra text")
    report = (await client.get("/console/databases/default/drift")).text
    assert f'href="/console/tables/{table_id}">drifty</a>' in report and "extra" in report
    forms = re.findall(r'<form method="post" action="([^"]+)"\s+data-confirm="([^"]+)"', report)
    assert [a for a, _ in forms] == [f"/console/tables/{table_id}/reconcile"] * 2
    assert all(c.startswith(("Repair drifty", "Adopt drifty")) for _, c in forms)

    r = await client.post(f"/console/tables/{table_id}/reconcile", data={"csrf": csrf, "strategy": "drop"})
    assert r.status_code == 422
    r = await client.post(f"/console/tables/{table_id}/reconcile", data={"csrf": csrf, "strategy": "adopt"})
    assert r.status_code == 303 and r.headers["location"] == f"/console/tables/{table_id}"
    table = await wait_synced(client, table_id)
    assert "extra" in table["columns"]
    assert "extra" in (physical_columns(byodb_pg_url, "drifty") or {})
    assert "No drift" in (await client.get("/console/databases/default/drift")).text


async def test_a_database_is_checked_from_the_console(client: httpx.AsyncClient) -> None:
    csrf = await csrf_of(client)
    r = await client.post("/console/databases/default/check", data={"csrf": csrf})
    assert r.status_code == 200 and "default answers: " in r.text
    r = await client.post("/console/databases/nowhere/check", data={"csrf": csrf})
    assert r.status_code == 404 and "nowhere" in r.text
