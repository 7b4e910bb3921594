"""Every new connection to a registered database is checked to reach the database registered
(byodb/verify.py): a host name re-pointed after its registration (DNS rebinding) must not take a saga's DDL,
nor a request's inspection, to another server, the service's own core database least of all.

No DNS here: the re-pointing is simulated by what a re-pointed name amounts to for the service, a stored
URL that now reaches another database (its registry row's URL, encrypted as the service stores it, is
replaced, and the processes reload it), or an adapter given one database's URL and another's identity.
Real servers throughout (PostgreSQL; MariaDB where present)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from schemasaga.bootstrap import Container
from schemasaga.byodb import TransientByodbError, open_adapter
from schemasaga.byodb.adapter import DdlLimits
from schemasaga.byodb.verify import CoreIdentity, Expected, WrongDatabase
from schemasaga.config import Settings
from schemasaga.coredb.own import PgOwnDatabase
from schemasaga.domain.columns import DEFAULT_COLUMNS
from schemasaga.secrets import generate_key
from tests.conftest import (
    error_of,
    fresh_pg_url,
    pg_sqlalchemy_url,
)
from tests.integration.conftest import running_service, wait_operation

KEY = generate_key()
# Two fresh databases of one server, by engine.
FIXTURES = {"postgresql": ("byodb_pg_url", "second_pg_url"), "mysql": ("byodb_mysql_url", "second_mysql_url")}
FAST = DdlLimits(lock_timeout_ms=500, statement_timeout_ms=10_000, connect_timeout_s=2)


def tables_in(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def byodb_sessions(pg_server: str, database: str) -> int:
    """Open connections of BYODB engines (application_name schemasaga-byodb) to ``database``."""
    with psycopg.connect(pg_server, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'schemasaga-byodb'",
            (database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def mysql_sessions(server: str, database: str) -> int:
    u = make_url(server)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.processlist WHERE db = %s", (database,))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return int(row[0])


@pytest.fixture
def third_pg_url(pg_server: str) -> Iterator[str]:
    yield from fresh_pg_url(pg_server)


@pytest.mark.parametrize("engine", ["postgresql", pytest.param("mysql", marks=pytest.mark.mariadb)])
def test_a_connection_to_another_database_is_closed_before_anything_runs(
    engine: str,
    request: pytest.FixtureRequest,
    pg_server: str,
    mysql_server: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registered: str = request.getfixturevalue(FIXTURES[engine][0])
    other: str = request.getfixturevalue(FIXTURES[engine][1])
    with open_adapter(registered, limits=FAST) as probe:
        stored = probe.identity().stored
    assert stored is not None
    expected = Expected(name="a", engine=engine, stored=stored)

    # The registered database itself: checked and used.
    with open_adapter(registered, limits=FAST, expected=expected) as adapter:
        adapter.ping()
        assert adapter.create_table("rebound", DEFAULT_COLUMNS) is True

    # Its URL now reaches another database: refused, transient, and nothing ran there.
    caplog.set_level(logging.WARNING, logger="schemasaga.byodb.verify")
    with open_adapter(other, limits=FAST, expected=expected) as adapter:
        with pytest.raises(WrongDatabase) as refused:
            adapter.create_table("rebound", DEFAULT_COLUMNS)
        assert isinstance(refused.value, TransientByodbError)
        assert "database 'a' is not reachable as registered" in str(refused.value)
        with pytest.raises(WrongDatabase):
            adapter.ping()
        # Closed: the pool kept nothing connected to it.
        database = str(make_url(other).database)
        if engine == "postgresql":
            assert byodb_sessions(pg_server, database) == 0
        else:
            assert mysql_server is not None
            assert mysql_sessions(mysql_server, database) == 0
    assert tables_in(other) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "schemasaga.byodb.verify"]
    assert lines and all("another database than the one registered" in line for line in lines), lines
    assert not any(str(make_url(other).host) in line or database in line for line in lines), lines


@pytest.fixture
async def core_identity(pool: AsyncConnectionPool[Any]) -> CoreIdentity:
    core = CoreIdentity(whole_server=False, read=PgOwnDatabase(pool, whole_server=False).identity)
    await core.refresh()
    return core


@pytest.fixture
def plain_role(pg_server: str) -> Iterator[str]:
    """A new role that may connect to any database of the server (no password: the tests' server trusts)."""
    role = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        yield role
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


async def test_without_a_stored_identity_the_core_database_is_still_refused(
    core_db: str, core_identity: CoreIdentity, byodb_pg_url: str, plain_role: str
) -> None:
    # No identity stored (an older registration, or a role denied pg_control_system()): its connections
    # are still compared with the core database, under any role.
    expected = Expected(name="old", engine="postgresql", stored=None, core=core_identity)
    core_url = pg_sqlalchemy_url(core_db)
    with psycopg.connect(core_db, autocommit=True) as conn:
        # The role may not read the cluster's identifier there: compared by the server's start and port.
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
    for url in (core_url, make_url(core_url).set(username=plain_role).render_as_string(hide_password=False)):
        with open_adapter(url, limits=FAST, expected=expected) as adapter:
            with pytest.raises(WrongDatabase, match="this service's own core database"):
                adapter.list_tables()
    # Another database of the same server is what such a registration may be.
    with open_adapter(byodb_pg_url, limits=FAST, expected=expected) as adapter:
        assert adapter.list_tables() == []
    # On the embedded server, none of the server's databases.
    whole = CoreIdentity(whole_server=True, read=core_identity._read)
    await whole.refresh()
    embedded = Expected(name="old", engine="postgresql", stored=None, core=whole)
    with open_adapter(byodb_pg_url, limits=FAST, expected=embedded) as adapter:
        with pytest.raises(WrongDatabase, match="embedded PostgreSQL server"):
            adapter.list_tables()


# -- the service: a registration re-pointed after it was registered ---------------------------------------


@contextlib.asynccontextmanager
async def http(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=container.web_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
        yield c


async def repoint(svc: Container, name: str, url: str) -> None:
    """What a re-pointed host name amounts to: the registration's URL now reaches ``url``'s database
    (its stored identity unchanged); the processes reload it."""
    async with svc.pool.connection() as conn:
        await conn.execute(
            "UPDATE rm_databases SET url_encrypted = %s WHERE name = %s", (svc.secrets.encrypt(url), name)
        )
    await svc.connections.refresh()


@pytest.fixture
async def svc(settings_factory: Callable[..., Settings], byodb_pg_url: str) -> AsyncIterator[Container]:
    settings = settings_factory(
        byodb_pg_url,
        secret_key=KEY,
        catalog_refresh_interval=3600.0,
        # Retried for as long as the test looks: never given up on (and compensated) meanwhile.
        retry_max_attempts=1000,
        retry_base_delay=0.05,
        retry_max_delay=0.1,
    )
    async with running_service(settings) as container:
        yield container


async def test_a_saga_never_runs_on_the_server_a_name_now_leads_to_and_retries(
    svc: Container, second_pg_url: str, third_pg_url: str
) -> None:
    async with http(svc) as api:
        r = await api.post("/v1/databases", json={"name": "a", "url": second_pg_url})
        assert r.status_code == 201, r.text
        await repoint(svc, "a", third_pg_url)

        r = await api.post("/table/create", json={"name": "rebound", "database": "a"})
        assert r.status_code == 200, r.text  # accepted, as through an outage: its saga waits
        table_id = r.json()["table"]["table_id"]
        r = await api.get("/v1/operations", params={"table_id": table_id})
        assert r.status_code == 200, r.text
        [operation] = r.json()
        op_url = f"/v1/operations/{operation['operation_id']}"
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            op = (await api.get(op_url)).json()
            if op["attempts"] >= 3:
                break
            assert op["status"] in ("pending", "running"), op
            assert asyncio.get_running_loop().time() < deadline, op
            await asyncio.sleep(0.05)
        assert "is not reachable as registered" in (op["last_error"] or ""), op
        assert op["status"] in ("pending", "running") and op["steps_done"] == [], op
        assert tables_in(third_pg_url) == [] and tables_in(second_pg_url) == []

        # The name leads to the registered database again: the saga completes there.
        await repoint(svc, "a", second_pg_url)
        done = await wait_operation(api, operation["operation_id"])
        assert done["status"] == "completed", done
        assert tables_in(second_pg_url) == ["rebound"] and tables_in(third_pg_url) == []


async def test_a_request_answers_503_when_a_name_now_leads_to_the_core_database(
    svc: Container, second_pg_url: str, core_db: str
) -> None:
    async with http(svc) as api:
        r = await api.post("/v1/databases", json={"name": "a", "url": second_pg_url})
        assert r.status_code == 201, r.text
        await repoint(svc, "a", pg_sqlalchemy_url(core_db))

        # Tracking the core's own token table would make it the user's to change and drop.
        r = await api.post("/v1/tables/track", json={"name": "api_tokens", "database": "a"})
        assert r.status_code == 503, r.text
        error = error_of(r)
        assert error["code"] == "database_unavailable", error
        assert "this service's own core database" in error["message"], error

        r = await api.post("/v1/databases/a/check")
        assert r.status_code == 200, r.text
        assert r.json()["reachable"] is False and "own core database" in r.json()["error"], r.text


async def test_a_saga_that_gives_up_drops_nothing_on_the_server_a_name_now_leads_to(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, second_pg_url: str, third_pg_url: str
) -> None:
    settings = settings_factory(
        byodb_pg_url, secret_key=KEY, catalog_refresh_interval=3600.0, retry_max_attempts=3
    )
    async with running_service(settings) as svc, http(svc) as api:
        r = await api.post("/v1/databases", json={"name": "a", "url": second_pg_url})
        assert r.status_code == 201, r.text
        r = await api.post("/table/create", json={"name": "shared_name", "database": "a"})
        assert r.status_code == 200, r.text
        table_id = r.json()["table"]["table_id"]
        await wait_operation(
            api, (await api.get("/v1/operations", params={"table_id": table_id})).json()[0]["operation_id"]
        )
        # The server the name now leads to has a table of that name too: the deletion must not touch it.
        engine = sa.create_engine(third_pg_url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE shared_name (id integer PRIMARY KEY)"))
        engine.dispose()
        await repoint(svc, "a", third_pg_url)

        r = await api.post("/table/delete", json={"table_id": table_id})
        assert r.status_code == 200, r.text
        [deletion] = [
            op
            for op in (await api.get("/v1/operations", params={"table_id": table_id})).json()
            if op["kind"] != "create_table"
        ]
        done = await wait_operation(api, deletion["operation_id"])
        assert done["status"] == "rejected", done
        assert "gave up after 3 attempts" in (done["last_error"] or ""), done
        assert "is not reachable as registered" in (done["last_error"] or ""), done
        assert tables_in(third_pg_url) == ["shared_name"] and tables_in(second_pg_url) == ["shared_name"]
