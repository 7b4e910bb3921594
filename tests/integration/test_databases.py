"""Databases registered at run time on PostgreSQL, MariaDB and SQLite: the demo's flow on each engine,
refusals that leave nothing behind, credentials that never leak, unregistering, other processes, key
rotation. Real servers throughout; the physical schema is read with SQLAlchemy's inspector."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from schemasaga.bootstrap import Container, check_settings
from schemasaga.cli import main as cli
from schemasaga.config import ConfigurationError, Settings
from schemasaga.secrets import SecretBox, generate_key, key_id
from tests.conftest import (
    another_spelling,
    create_database,
    drop_database,
    error_of,
    pg_sqlalchemy_url,
    with_dbname,
)
from tests.integration.conftest import running_service, wait_operation, wait_synced

KEY = generate_key()
PASSWORD = "S3cr3t-pa55word-xyz"
# Not the default database (byodb_pg_url): one database cannot be registered under two names.
ENGINE_URLS = {"postgresql": "second_pg_url", "mysql": "byodb_mysql_url", "sqlite": "byodb_sqlite_url"}


@contextlib.asynccontextmanager
async def http(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=container.web_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        yield c


@pytest.fixture
def make_settings(settings_factory: Callable[..., Settings], byodb_pg_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"secret_key": KEY, "catalog_refresh_interval": 3600.0}
        values.update(overrides)
        return settings_factory(values.pop("byodb_url", byodb_pg_url), **values)

    return make


@pytest.fixture
async def svc(make_settings: Callable[..., Settings]) -> AsyncIterator[Container]:
    async with running_service(make_settings()) as container:
        yield container


@pytest.fixture
async def api(svc: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with http(svc) as c:
        yield c


def live_columns(url: str, table: str) -> set[str] | None:
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        if not insp.has_table(table):
            return None
        return {c["name"] for c in insp.get_columns(table)}
    finally:
        engine.dispose()


async def database_traces(container: Container, name: str) -> tuple[int, int]:
    """Events in the database's stream, and its rm_databases rows."""
    events = await container.store.read_stream(f"Database${name}")
    async with container.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM rm_databases WHERE name = %s", (name,))
        ).fetchone()
    assert row is not None
    return len(events), int(row[0])


async def register(client: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
    r = await client.post("/v1/databases", json={"name": name, "url": url})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def create_table(client: httpx.AsyncClient, name: str, database: str) -> str:
    r = await client.post("/table/create", json={"name": name, "database": database})
    assert r.status_code == 200, r.text
    return str(r.json()["table"]["table_id"])


@pytest.mark.parametrize("engine", ["postgresql", pytest.param("mysql", marks=pytest.mark.mariadb), "sqlite"])
async def test_demo_flow_on_a_registered_database(
    engine: str, request: pytest.FixtureRequest, api: httpx.AsyncClient
) -> None:
    url: str = request.getfixturevalue(ENGINE_URLS[engine])
    registered = await register(api, "analytics", url)
    parsed = make_url(url)
    assert registered["engine"] == engine and registered["status"] == "available"
    assert registered["server_version"] and registered["source"] == "api"
    assert registered["database"] == parsed.database and registered["host"] == parsed.host
    assert "url" not in registered and "url_encrypted" not in registered

    table_id = await create_table(api, "my_new_table_123", "analytics")
    table = await wait_synced(api, table_id)
    assert table["exists"] is True and table["database"] == "analytics" and table["engine"] == engine
    assert live_columns(url, "my_new_table_123") == {"id", "name", "created_at", "updated_at"}

    r = await api.post(
        "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    assert r.status_code == 200, r.text
    table = await wait_synced(api, table_id)
    assert table["columns"]["age"]["type"] == "integer"
    assert live_columns(url, "my_new_table_123") == {"id", "name", "created_at", "updated_at", "age"}

    r = await api.post("/table/column", json={"table_id": table_id, "column": {"name": "age"}})
    assert r.status_code == 200, r.text
    table = await wait_synced(api, table_id)
    assert "age" not in table["columns"]
    assert live_columns(url, "my_new_table_123") == {"id", "name", "created_at", "updated_at"}

    r = await api.post("/table/delete", json={"table_id": table_id})
    assert r.status_code == 200, r.text
    table = await wait_synced(api, table_id)
    assert table["exists"] is False
    assert live_columns(url, "my_new_table_123") is None

    shown = (await api.get("/v1/databases/analytics")).json()
    assert shown["engine"] == engine and shown["live_tables"] == 0


async def test_default_database_comes_from_configuration(
    api: httpx.AsyncClient,
    svc: Container,
    make_settings: Callable[..., Settings],
    byodb_pg_url: str,
    byodb_sqlite_url: str,
) -> None:
    r = await api.get("/v1/databases")
    assert r.status_code == 200
    [default] = r.json()["items"]
    assert (
        default["name"] == "default" and default["engine"] == "postgresql" and default["source"] == "config"
    )
    # The configured URL's server (the local one on 127.0.0.1:5432, or the embedded one at its port).
    configured = make_url(byodb_pg_url)
    assert configured.host and configured.port
    assert default["host"] == configured.host and default["port"] == configured.port
    assert default["database"] == configured.database

    table_id = await create_table(api, "on_default", "default")
    assert (await wait_synced(api, table_id))["engine"] == "postgresql"

    # A second start with the same configuration records nothing; a changed URL is recorded.
    async with running_service(make_settings(), worker=False):
        pass
    assert [e.event_type for e in await svc.store.read_stream("Database$default")] == ["DatabaseRegistered"]
    async with running_service(make_settings(byodb_url=byodb_sqlite_url), worker=False) as other:
        assert other.connections.engine("default") == "sqlite"
    types = [e.event_type for e in await svc.store.read_stream("Database$default")]
    assert types == ["DatabaseRegistered", "DatabaseUrlChanged"]
    assert (await api.get("/v1/databases/default")).json()["engine"] == "sqlite"

    r = await api.delete("/v1/databases/default")
    assert r.status_code == 409 and error_of(r)["code"] == "database_configured"


def on_test_server(url: str, pg_server: str) -> str:
    """``test-server://USER/DB``: that user and database on the tests' PostgreSQL server, wherever it
    listens (127.0.0.1:5432, the embedded server's port); other URLs as they are."""
    if not url.startswith("test-server://"):
        return url
    user, dbname = url.removeprefix("test-server://").split("/")
    server = make_url(pg_sqlalchemy_url(pg_server))
    return server.set(username=user, database=dbname).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("name", "url", "status", "code"),
    [
        ("bad_driver", "foo://x", 422, "unsupported_driver"),
        ("malformed", "this is not a url", 422, "invalid_url"),
        ("bad_port", "postgresql+psycopg://postgres@127.0.0.1:notaport/x", 422, "invalid_url"),
        ("relative", "sqlite:///relative.db", 422, "invalid_url"),
        ("closed_port", "postgresql+psycopg://postgres@127.0.0.1:1/postgres", 422, "database_unreachable"),
        # On the tests' PostgreSQL server (see on_test_server): it answers, and refuses.
        ("no_role", "test-server://no_such_role_xyz/postgres", 422, "bad_credentials"),
        ("no_db", "test-server://postgres/no_such_database_xyz", 422, "database_unreachable"),
        # Query parameters that make a driver read a file, or connect to another host than the URL's.
        (
            "read_file",
            "mysql+pymysql://root@127.0.0.1/mysql?read_default_file=/etc/hostname",
            422,
            "invalid_url",
        ),
        (
            "passfile",
            "postgresql+psycopg://postgres@127.0.0.1/postgres?passfile=/etc/hostname",
            422,
            "invalid_url",
        ),
        (
            "hostaddr",
            "postgresql+psycopg://postgres@db.example:5432/postgres?hostaddr=127.0.0.1",
            422,
            "invalid_url",
        ),
        (
            "host_twice",
            "postgresql+psycopg://postgres@db.example/postgres?host=/var/run/postgresql",
            422,
            "invalid_url",
        ),
        ("two_sockets", "postgresql+psycopg://postgres@/postgres?host=/a&host=/b", 422, "invalid_url"),
        # libpq's host lists: the allow-list sees one host, libpq connects to the first that answers
        ("host_list", "postgresql+psycopg://postgres@127.0.0.1,db.example/postgres", 422, "invalid_url"),
        ("socket_list", "postgresql+psycopg://postgres@/postgres?host=/a,/b", 422, "invalid_url"),
        ("mysql_host_list", "mysql+pymysql://root@127.0.0.1,db.example/x", 422, "invalid_url"),
        ("bad_sslmode", "postgresql+psycopg://postgres@127.0.0.1/postgres?sslmode=maybe", 422, "invalid_url"),
        ("sqlite_query", "sqlite:////tmp/x.db?vfs=unix-none", 422, "invalid_url"),
        ("nul", "sqlite:////tmp/a\x00b.db", 422, "invalid_url"),
        ("Bad-Name", "sqlite:////tmp/x.db", 422, "invalid_name"),
        ("default", "sqlite:////tmp/x.db", 422, "invalid_name"),
    ],
)
async def test_refused_registration_leaves_nothing(
    name: str, url: str, status: int, code: str, api: httpx.AsyncClient, svc: Container, pg_server: str
) -> None:
    url = on_test_server(url, pg_server)
    before = len(await svc.store.read_all())
    r = await api.post("/v1/databases", json={"name": name, "url": url})
    assert r.status_code == status, r.text
    assert error_of(r)["code"] == code
    assert len(await svc.store.read_all()) == before
    if name != "default":
        assert await database_traces(svc, name) == (0, 0)
        assert (await api.get(f"/v1/databases/{name}")).status_code == 404


async def test_sqlite_files_outside_the_sqlite_dir_are_refused_and_nothing_is_created(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    async with running_service(make_settings(sqlite_dir=allowed), worker=False) as svc, http(svc) as api:
        before = len(await svc.store.read_all())
        for name, path in [
            ("plain", outside / "a.db"),
            ("dotdot", allowed / ".." / "outside" / "b.db"),
            ("symlink", allowed / "link" / "c.db"),
        ]:
            r = await api.post("/v1/databases", json={"name": name, "url": f"sqlite:///{path}"})
            assert r.status_code == 403, r.text
            assert error_of(r)["code"] == "database_not_allowed"
            assert "SCHEMASAGA_SQLITE_DIR" in error_of(r)["message"]
            assert await database_traces(svc, name) == (0, 0)
        assert len(await svc.store.read_all()) == before
        assert list(outside.iterdir()) == []  # no file was opened, so none was created

        r = await api.post("/v1/databases", json={"name": "inside", "url": f"sqlite:///{allowed / 'in.db'}"})
        assert r.status_code == 201, r.text
        assert (allowed / "in.db").exists()


async def test_hosts_outside_the_allow_list_are_refused_without_connecting(
    make_settings: Callable[..., Settings], byodb_pg_url: str, second_pg_url: str
) -> None:
    pg = make_url(byodb_pg_url)
    # The test server's own host (an address on 127.0.0.1, or the embedded server's socket directory).
    own = pg.host or str(pg.query["host"])
    settings = make_settings(byodb_allowed_hosts=f"127.0.0.0/8, {own}, *.internal.example")
    async with running_service(settings, worker=False) as svc, http(svc) as api:
        refused = {
            # would take the connect timeout if it were tried: the refusal is immediate
            "blackhole": "postgresql+psycopg://postgres@10.255.255.1:5432/postgres",
            # a name is matched as written, never resolved to an allowed address
            "by_name": pg.set(host="localhost", query={}).render_as_string(hide_password=False),
            "suffix_only": "mysql+pymysql://root@internal.example/db",
        }
        for name, url in refused.items():
            start = time.monotonic()
            r = await api.post("/v1/databases", json={"name": name, "url": url})
            assert r.status_code == 403, r.text
            assert error_of(r)["code"] == "database_not_allowed"
            message = error_of(r)["message"]
            assert "*.internal" not in message and "127.0.0.0/8" not in message  # the list stays private
            assert time.monotonic() - start < 1.0
            assert await database_traces(svc, name) == (0, 0)

        # A host list matched a suffix entry on its last name, while libpq connects to the first host
        # that answers: refused whatever the list says.
        r = await api.post(
            "/v1/databases",
            json={
                "name": "host_list",
                "url": "postgresql+psycopg://postgres@127.0.0.1,db.internal.example/x",
            },
        )
        assert r.status_code == 422, r.text
        assert error_of(r)["code"] == "invalid_url"
        assert await database_traces(svc, "host_list") == (0, 0)

        r = await api.post("/v1/databases", json={"name": "allowed", "url": second_pg_url})
        assert r.status_code == 201, r.text
        # The configured default is the operator's: the allow-list does not apply to it.
        assert (await api.get("/v1/databases/default")).status_code == 200


def test_a_malformed_allow_list_stops_the_start() -> None:
    with pytest.raises(ConfigurationError, match=r"SCHEMASAGA_BYODB_ALLOWED_HOSTS.*10\.0\.0\.0/33"):
        check_settings(Settings(byodb_allowed_hosts="db.example.com, 10.0.0.0/33"))


async def test_a_url_cannot_make_the_driver_read_a_file_into_the_answer(
    api: httpx.AsyncClient, svc: Container, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.cnf"
    secret.write_text("TOP-SECRET-LINE-xyz\n")
    for url in (
        f"mysql+pymysql://root@127.0.0.1/mysql?read_default_file={secret}",
        f"postgresql+psycopg://postgres@127.0.0.1/postgres?passfile={secret}&sslrootcert={secret}",
    ):
        r = await api.post("/v1/databases", json={"name": "reader", "url": url})
        assert r.status_code == 422 and error_of(r)["code"] == "invalid_url", r.text
        assert "TOP-SECRET" not in r.text
        assert await database_traces(svc, "reader") == (0, 0)


async def test_a_nul_character_in_a_name_is_a_4xx_in_the_usual_shape(svc: Container) -> None:
    transport = httpx.ASGITransport(app=svc.web_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        for method, path in [
            ("GET", "/v1/databases/x%00y"),
            ("GET", "/v1/tables?database=x%00y"),
            ("DELETE", "/v1/databases/x%00y"),
            ("POST", "/v1/databases/x%00y/check"),
            ("GET", "/v1/databases/x%00y/drift"),
        ]:
            r = await c.request(method, path)
            assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
            assert error_of(r)["code"], r.text


async def test_an_unexpected_error_answers_500_in_the_usual_shape_without_details(
    svc: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("internal detail xyz")

    monkeypatch.setattr(svc.databases, "list_databases", broken)
    transport = httpx.ASGITransport(app=svc.web_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        r = await c.get("/v1/databases")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "urn:schemasaga:problem:internal_error",
        "title": "Internal error",
        "status": 500,
        "detail": "internal error; it has been logged",
        "code": "internal_error",
    }


@pytest.mark.mariadb
async def test_wrong_mariadb_password_is_refused(
    api: httpx.AsyncClient, svc: Container, byodb_mysql_url: str
) -> None:
    url = make_url(byodb_mysql_url).set(password="wrong-password-xyz").render_as_string(hide_password=False)
    r = await api.post("/v1/databases", json={"name": "analytics", "url": url})
    assert r.status_code == 422 and error_of(r)["code"] == "bad_credentials", r.text
    assert "wrong-password-xyz" not in r.text
    assert await database_traces(svc, "analytics") == (0, 0)


@pytest.fixture
def mariadb_user(byodb_mysql_url: str) -> Iterator[str]:
    """A URL of the fresh MariaDB database for user 'sagatest' with a distinctive password."""
    u = make_url(byodb_mysql_url)
    user = f"sagatest_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{PASSWORD}'")
            for host in ("%", "localhost"):
                cur.execute(f"GRANT ALL ON `{u.database}`.* TO '{user}'@'{host}'")
        yield u.set(username=user, password=PASSWORD).render_as_string(hide_password=False)
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
    finally:
        conn.close()


@pytest.mark.mariadb
async def test_password_never_appears_in_answers_events_or_logs(
    api: httpx.AsyncClient, svc: Container, mariadb_user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []

    async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = await api.request(method, path, **kwargs)
        answers.append(r.text + json.dumps(dict(r.headers)))
        return r

    wrong = make_url(mariadb_user).set(password=PASSWORD + "-not").render_as_string(hide_password=False)
    assert (await call("POST", "/v1/databases", json={"name": "analytics", "url": wrong})).status_code == 422
    malformed = mariadb_user.replace(":3306", ":port")
    assert (
        await call("POST", "/v1/databases", json={"name": "analytics", "url": malformed})
    ).status_code == 422
    assert (
        await call("POST", "/v1/databases", json={"name": "analytics", "url": mariadb_user})
    ).status_code == 201
    assert (
        await call("POST", "/v1/databases", json={"name": "analytics", "url": mariadb_user})
    ).status_code == 409

    r = await call("POST", "/table/create", json={"name": "secrets_tbl", "database": "analytics"})
    table_id = r.json()["table"]["table_id"]
    await wait_synced(api, table_id)
    await call("POST", "/table/show", json={"table_id": table_id})
    await call(
        "POST", "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
    )
    await wait_synced(api, table_id)
    await call("GET", "/v1/databases")
    await call("GET", "/v1/databases/analytics")
    assert (await call("POST", "/v1/databases/analytics/check")).json()["reachable"] is True
    await call("GET", f"/v1/tables/{table_id}/events")
    await call("GET", "/openapi.json")

    events = await svc.store.read_all()
    assert any(e.event_type == "DatabaseRegistered" and e.data["name"] == "analytics" for e in events)
    async with svc.pool.connection() as conn:
        rows = await (await conn.execute("SELECT row_to_json(d)::text FROM rm_databases d")).fetchall()
    haystacks = {
        "answers": answers,
        "events": [json.dumps([e.data, e.metadata], default=str) for e in events],
        "rm_databases": [r[0] for r in rows],
        "logs": [f"{rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records] + [caplog.text],
    }
    for where, texts in haystacks.items():
        for text in texts:
            assert PASSWORD not in text, f"password found in {where}: {text[:300]}"
    assert len(caplog.records) > 0  # the logs were really captured


async def test_unregister_refused_while_live_tables(
    api: httpx.AsyncClient, svc: Container, byodb_sqlite_url: str
) -> None:
    await register(api, "analytics", byodb_sqlite_url)
    r = await api.post("/v1/databases", json={"name": "analytics", "url": byodb_sqlite_url})
    assert r.status_code == 409 and error_of(r)["code"] == "database_exists"

    table_id = await create_table(api, "kept", "analytics")
    await wait_synced(api, table_id)
    assert (await api.get("/v1/databases/analytics")).json()["live_tables"] == 1
    r = await api.delete("/v1/databases/analytics")
    assert r.status_code == 409 and error_of(r)["code"] == "database_in_use", r.text

    assert (await api.post("/table/delete", json={"table_id": table_id})).status_code == 200
    await wait_synced(api, table_id)
    # Its rows wait in the trash, in that database: forgotten, they could be neither restored nor purged.
    r = await api.delete("/v1/databases/analytics")
    assert r.status_code == 409 and error_of(r)["code"] == "database_in_use", r.text
    assert "1 entry in the trash" in error_of(r)["message"]
    [entry] = (await api.get("/v1/trash", params={"database": "analytics"})).json()
    assert entry["table_id"] == table_id
    r = await api.delete(f"/v1/trash/{entry['trash_id']}")
    assert r.status_code == 202, r.text
    assert (await wait_operation(api, r.json()["operation_id"]))["status"] == "completed"
    r = await api.delete("/v1/databases/analytics")
    assert r.status_code == 200, r.text
    assert (await api.get("/v1/databases/analytics")).status_code == 404
    assert "analytics" not in svc.connections.names()
    r = await api.post("/table/create", json={"name": "late", "database": "analytics"})
    assert r.status_code == 404 and error_of(r)["code"] == "database_not_found"
    assert (await api.delete("/v1/databases/analytics")).status_code == 404
    assert (await api.post("/v1/databases/analytics/check")).status_code == 404

    # The name can be registered again; the stream goes on.
    await register(api, "analytics", byodb_sqlite_url)
    types = [e.event_type for e in await svc.store.read_stream("Database$analytics")]
    assert types == ["DatabaseRegistered", "DatabaseUnregistered", "DatabaseRegistered"]


async def test_tables_of_an_unregistered_database_are_shown_without_blocking_reloads(
    api: httpx.AsyncClient, svc: Container, byodb_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(api, "analytics", byodb_sqlite_url)
    table_id = await create_table(api, "was_here", "analytics")
    await wait_synced(api, table_id)
    r = await api.delete(f"/v1/tables/{table_id}", params={"purge": "true"})  # not kept in the trash
    assert r.status_code == 202, r.text
    await wait_synced(api, table_id)
    assert (await api.delete("/v1/databases/analytics")).status_code == 200

    def blocking_reload() -> None:
        raise AssertionError("a blocking reload of the registry on the event loop")

    monkeypatch.setattr(svc.connections, "reload", blocking_reload)
    r = await api.get("/v1/tables", params={"include_deleted": "true"})
    assert r.status_code == 200, r.text
    [shown] = [t for t in r.json()["items"] if t["table_id"] == table_id]
    assert shown["database"] == "analytics" and shown["engine"] is None
    r = await api.post("/table/show", json={"table_id": table_id})
    assert r.status_code == 200 and r.json()["table"]["engine"] is None


async def test_check_reports_reachability(
    api: httpx.AsyncClient, svc: Container, byodb_sqlite_url: str, tmp_path: Any
) -> None:
    await register(api, "analytics", byodb_sqlite_url)
    r = await api.post("/v1/databases/analytics/check")
    assert r.status_code == 200
    body = r.json()
    assert body["reachable"] is True and body["status"] == "available" and body["server_version"]
    # A check that changes nothing records nothing.
    assert [e.event_type for e in await svc.store.read_stream("Database$analytics")] == ["DatabaseRegistered"]


async def test_other_processes_learn_of_a_new_database(
    make_settings: Callable[..., Settings], byodb_sqlite_url: str
) -> None:
    # Three "containers" on one core database, all started before the registration, none reloading on
    # a timer: an API replica that registers, a worker process, and another API replica.
    async with (
        running_service(make_settings(), worker=False) as api_a,
        running_service(make_settings(), worker=True) as worker_b,
        running_service(make_settings(), worker=False) as api_c,
        http(api_a) as client_a,
        http(api_c) as client_c,
    ):
        await register(client_a, "analytics", byodb_sqlite_url)
        assert "analytics" not in worker_b.connections.names()
        table_id = await create_table(client_a, "from_a", "analytics")
        table = await wait_synced(client_a, table_id)  # only worker B runs sagas
        assert table["exists"] is True and table["engine"] == "sqlite"
        assert "analytics" in worker_b.connections.names()
        assert live_columns(byodb_sqlite_url, "from_a") is not None
        # Replica C knows it at its first request naming it.
        table_c = await create_table(client_c, "from_c", "analytics")
        assert (await wait_synced(client_c, table_c))["engine"] == "sqlite"
        # And a timed reload makes a replica forget an unregistered database.
        for t in (table_id, table_c):
            r = await client_a.delete(f"/v1/tables/{t}", params={"purge": "true"})
            assert r.status_code == 202, r.text
            await wait_synced(client_a, t)
        assert (await client_a.delete("/v1/databases/analytics")).status_code == 200
        await api_c.connections.refresh()
        assert "analytics" not in api_c.connections.names()


async def test_refusing_to_start_without_a_key(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="SCHEMASAGA_SECRET_KEY must be set"):
        async with running_service(settings_factory(byodb_pg_url, secret_key=None), worker=False):
            pass


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("oracle://scott:tiger-secret@db/orcl", "unsupported database driver"),
        ("postgresql+psycopg://u:tiger-secret@h:notaport/x", "malformed"),
    ],
)
async def test_refusing_to_start_with_a_bad_default_database_url(
    settings_factory: Callable[..., Settings], url: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        async with running_service(settings_factory(url), worker=False):
            pass
    assert "tiger-secret" not in str(refused.value)


async def test_key_rotation(
    make_settings: Callable[..., Settings],
    svc: Container,
    api: httpx.AsyncClient,
    byodb_sqlite_url: str,
    core_db: str,
    byodb_pg_url: str,
) -> None:
    await register(api, "analytics", byodb_sqlite_url)
    table_id = await create_table(api, "rotated", "analytics")
    await wait_synced(api, table_id)

    new_key = generate_key()
    env = {
        "SCHEMASAGA_DATABASE_URL": core_db,
        "SCHEMASAGA_BYODB_URL": byodb_pg_url,
        "SCHEMASAGA_SECRET_KEY": KEY,
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["secrets", "rotate", "--new-key", new_key], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "re-encrypted 2 database URL(s)" in result.output and new_key not in result.output

    old, new = SecretBox([KEY]), SecretBox([new_key])
    async with svc.pool.connection() as conn:
        rows = await (await conn.execute("SELECT name, url_encrypted, key_id FROM rm_databases")).fetchall()
    assert sorted(r[0] for r in rows) == ["analytics", "default"]
    for _name, token, kid in rows:
        assert kid == key_id(new_key)
        assert not old.can_decrypt(token)
        assert new.can_decrypt(token)
    assert new.decrypt(next(r[1] for r in rows if r[0] == "analytics")) == byodb_sqlite_url
    stream = await svc.store.read_stream("Database$analytics")
    assert [e.event_type for e in stream] == ["DatabaseRegistered", "DatabaseCredentialsRotated"]
    assert old.decrypt(stream[0].data["url_encrypted"]) == byodb_sqlite_url  # old events stay as they were

    # Running again changes nothing.
    env["SCHEMASAGA_SECRET_KEY"] = f"{new_key},{KEY}"
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["secrets", "rotate", "--new-key", new_key], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0 and "re-encrypted 0" in result.output, result.output

    # The running service keeps working; a process with the new key reaches the database; one with
    # only the old key refuses to start.
    assert (await api.post("/v1/databases/analytics/check")).json()["reachable"] is True
    async with running_service(make_settings(secret_key=new_key)) as fresh, http(fresh) as client:
        r = await client.post("/v1/databases/analytics/check")
        assert r.json()["reachable"] is True, r.text
        r = await client.post(
            "/table/column", json={"table_id": table_id, "column": {"name": "age", "type": "integer"}}
        )
        assert r.status_code == 200
        await wait_synced(client, table_id)
    assert live_columns(byodb_sqlite_url, "rotated") == {"id", "name", "created_at", "updated_at", "age"}
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        async with running_service(make_settings(secret_key=KEY), worker=False):
            pass


async def test_a_replica_out_of_date_cannot_create_in_an_unregistered_database(
    make_settings: Callable[..., Settings], byodb_sqlite_url: str
) -> None:
    # Replica B learned of the database, then A unregistered it; B's catalog still has it (no timed
    # reload), but the registry row decides.
    async with (
        running_service(make_settings(), worker=False) as api_a,
        running_service(make_settings(), worker=False) as api_b,
        http(api_a) as client_a,
        http(api_b) as client_b,
    ):
        await register(client_a, "analytics", byodb_sqlite_url)
        await api_b.connections.refresh()
        assert (await client_a.delete("/v1/databases/analytics")).status_code == 200
        assert "analytics" in api_b.connections.names()
        events_before = len(await api_b.store.read_all())
        r = await client_b.post("/table/create", json={"name": "orphan", "database": "analytics"})
        assert r.status_code == 404 and error_of(r)["code"] == "database_not_found", r.text
        assert len(await api_b.store.read_all()) == events_before


# -- one database, one name ----------------------------------------------------------------------

SPELLINGS = [
    pytest.param("postgresql", "same", id="postgresql-same-url"),
    pytest.param("postgresql", "host", id="postgresql-localhost"),
    pytest.param("mysql", "same", id="mysql-same-url", marks=pytest.mark.mariadb),
    pytest.param("mysql", "host", id="mysql-localhost", marks=pytest.mark.mariadb),
    pytest.param("sqlite", "same", id="sqlite-same-url"),
    pytest.param("sqlite", "symlink", id="sqlite-symlink"),
    pytest.param("sqlite", "dotdot", id="sqlite-dotdot"),
]
FIRST_URLS = {"postgresql": "byodb_pg_url", "mysql": "byodb_mysql_url", "sqlite": "byodb_sqlite_url"}
SECOND_URLS = {"postgresql": "second_pg_url", "mysql": "second_mysql_url", "sqlite": "second_sqlite_url"}


async def assert_refused_as_registered(
    api: httpx.AsyncClient, svc: Container, *, name: str, url: str, existing: str
) -> None:
    """Registering ``url`` as ``name`` answers 409 naming ``existing``, and writes nothing."""
    before = len(await svc.store.read_all())
    r = await api.post("/v1/databases", json={"name": name, "url": url})
    assert r.status_code == 409, r.text
    error = error_of(r)
    assert error["code"] == "database_already_registered", r.text
    assert repr(existing) in error["message"]
    parsed = make_url(url)
    for secret in (url, parsed.render_as_string(hide_password=False), parsed.database, parsed.password):
        assert not secret or secret not in r.text
    assert len(await svc.store.read_all()) == before
    assert await database_traces(svc, name) == (0, 0)
    assert (await api.get(f"/v1/databases/{name}")).status_code == 404
    assert name not in svc.connections.names()


@pytest.mark.parametrize(("engine", "how"), SPELLINGS)
async def test_a_database_registered_already_is_refused_under_any_url(
    engine: str,
    how: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    api: httpx.AsyncClient,
    svc: Container,
) -> None:
    url: str = request.getfixturevalue(SECOND_URLS[engine])
    await register(api, "first", url)
    again = url if how == "same" else another_spelling(url, tmp_path, how=how)
    assert again == url or make_url(again) != make_url(url)
    await assert_refused_as_registered(api, svc, name="second", url=again, existing="first")
    # The first registration is untouched, and serves.
    table_id = await create_table(api, "still_here", "first")
    assert (await wait_synced(api, table_id))["exists"] is True


@pytest.mark.parametrize(
    ("engine", "how"),
    [
        pytest.param("postgresql", "host", id="postgresql"),
        pytest.param("mysql", "host", id="mysql", marks=pytest.mark.mariadb),
        pytest.param("sqlite", "symlink", id="sqlite"),
    ],
)
async def test_the_default_database_cannot_be_registered_again(
    engine: str,
    how: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
) -> None:
    # The default is recorded without connecting: its identity is read when it is needed.
    url: str = request.getfixturevalue(FIRST_URLS[engine])
    async with running_service(make_settings(byodb_url=url), worker=False) as svc, http(svc) as api:
        for name, again in (("same", url), ("respelled", another_spelling(url, tmp_path, how=how))):
            await assert_refused_as_registered(api, svc, name=name, url=again, existing="default")
        [default] = (await api.get("/v1/databases")).json()["items"]
        assert default["name"] == "default"


@pytest.mark.parametrize("engine", ["postgresql", pytest.param("mysql", marks=pytest.mark.mariadb), "sqlite"])
async def test_other_databases_of_one_server_are_accepted(
    engine: str, request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> None:
    default_url: str = request.getfixturevalue(FIRST_URLS[engine])
    other_url: str = request.getfixturevalue(SECOND_URLS[engine])
    async with running_service(make_settings(byodb_url=default_url), worker=False) as svc, http(svc) as api:
        assert (await register(api, "other", other_url))["status"] == "available"
        async with svc.pool.connection() as conn:
            rows = dict(await (await conn.execute("SELECT name, identity FROM rm_databases")).fetchall())
    assert rows["default"] is None  # recorded from the configuration, without connecting
    assert rows["other"] and rows["other"].startswith(f"{engine}.")


async def test_two_registrations_of_one_database_at_once_accept_one(
    api: httpx.AsyncClient, svc: Container, second_pg_url: str, tmp_path: Path
) -> None:
    answers = await asyncio.gather(
        api.post("/v1/databases", json={"name": "one", "url": second_pg_url}),
        api.post("/v1/databases", json={"name": "two", "url": another_spelling(second_pg_url, tmp_path)}),
    )
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    [refused] = [r for r in answers if r.status_code == 409]
    assert error_of(refused)["code"] == "database_already_registered"
    names = {r.json()["name"] for r in answers if r.status_code == 201}
    listed = [d["name"] for d in (await api.get("/v1/databases")).json()["items"]]
    assert listed == sorted({"default"} | names)


@pytest.fixture
def plain_pg_url(pg_server: str, second_pg_url: str) -> Iterator[str]:
    """second_pg_url for a new role that may not call pg_control_system() in that database."""
    u = make_url(second_pg_url)
    role = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    with psycopg.connect(with_dbname(pg_server, str(u.database)), autocommit=True) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
    try:
        yield u.set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


async def test_a_role_that_cannot_read_the_cluster_identifier_is_compared_too(
    api: httpx.AsyncClient, svc: Container, second_pg_url: str, plain_pg_url: str, tmp_path: Path
) -> None:
    # Registered by a role that may read the cluster's identifier, then by one that may not: the
    # registered database is asked again, by what both can read.
    await register(api, "full", second_pg_url)
    await assert_refused_as_registered(api, svc, name="plain", url=plain_pg_url, existing="full")
    assert (await api.delete("/v1/databases/full")).status_code == 200
    # And the other way round: nothing that lasts is stored for the plain role's registration.
    await register(api, "plain", plain_pg_url)
    async with svc.pool.connection() as conn:
        row = await (await conn.execute("SELECT identity FROM rm_databases WHERE name = 'plain'")).fetchone()
    assert row == (None,)
    await assert_refused_as_registered(
        api, svc, name="full_again", url=another_spelling(second_pg_url, tmp_path), existing="plain"
    )


async def test_an_unreachable_registered_database_does_not_block_registrations(
    api: httpx.AsyncClient,
    svc: Container,
    pg_server: str,
    second_pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A registration recorded without an identity (as before identities were stored), whose database
    # has gone: it cannot be compared, and does not stop another database from being registered.
    gone = create_database(pg_server)
    gone_url = pg_sqlalchemy_url(with_dbname(pg_server, gone))
    await register(api, "gone", gone_url)
    async with svc.pool.connection() as conn:
        await conn.execute("UPDATE rm_databases SET identity = NULL WHERE name = 'gone'")
    drop_database(pg_server, gone)
    caplog.set_level(logging.WARNING, logger="schemasaga.services.databases")
    assert (await register(api, "other", second_pg_url))["name"] == "other"
    [skipped] = [r.getMessage() for r in caplog.records if "not compared" in r.getMessage()]
    assert "'gone'" in skipped and gone_url not in skipped


async def test_a_sqlite_file_can_be_registered_in_the_default_folder_of_a_fresh_data_dir(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh"
    async with running_service(make_settings(data_dir=data_dir, sqlite_dir=None), worker=False) as c:
        async with http(c) as client:
            # The folder the allow-list names is there from the start: no SQLITE_CANTOPEN until a mkdir.
            body = await register(client, "notes", f"sqlite:///{data_dir / 'sqlite' / 'notes.db'}")
    assert body["engine"] == "sqlite"
    assert (data_dir / "sqlite" / "notes.db").exists()
