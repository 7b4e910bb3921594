"""Test databases: one template built per run, a fresh clone for every test.

PostgreSQL comes from ``SCHEMASAGA_TEST_DATABASE_URL``, else the local server on 127.0.0.1:5432,
else an embedded PostgreSQL started for the run (machines with no database server;
``SCHEMASAGA_TEST_EMBEDDED=1`` forces it). The embedded one listens on 127.0.0.1 at a free port as well
as on its Unix socket, and the tests get its TCP address: tests that need TCP (the fault proxy, a
closed port next to the server's) run the same on every machine.
MariaDB comes from ``SCHEMASAGA_TEST_MYSQL_URL`` or 127.0.0.1:3306 as root; tests that need it are
skipped when it is absent, except under CI where its absence is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from schemasaga.coredb.migrations import upgrade

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/"


def _reachable(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A conninfo to the maintenance database of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("SCHEMASAGA_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if os.environ.get("SCHEMASAGA_TEST_EMBEDDED") != "1" and _reachable(LOCAL_PG):
        yield LOCAL_PG
        return
    from schemasaga.coredb.embedded import EmbeddedPostgres

    # Not under pytest's tmp_path: pytest resets its base folder to 0700 at every session start,
    # which would lock the embedded server's OS user (pgserver, when running as root) out.
    data_dir = Path(tempfile.mkdtemp(prefix="schemasaga-test-pg-"))
    server = EmbeddedPostgres(data_dir / "data", tcp_port=0)
    server.start()
    try:
        yield server.conninfo("postgres", tcp=True)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)


def create_database(server: str, *, template: str | None = None) -> str:
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        clause = f" TEMPLATE {template}" if template else ""
        conn.execute(f"CREATE DATABASE {name}{clause}")
    return name


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def core_template(pg_server: str) -> Iterator[str]:
    """Name of a template database holding the full core schema, built once per run."""
    name = create_database(pg_server)
    upgrade(with_dbname(pg_server, name))
    try:
        yield name
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def core_db(pg_server: str, core_template: str) -> Iterator[str]:
    """Conninfo of a fresh core database (schema applied), private to one test."""
    name = create_database(pg_server, template=core_template)
    try:
        yield with_dbname(pg_server, name)
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def empty_pg_db(pg_server: str) -> Iterator[str]:
    """Conninfo of a fresh empty PostgreSQL database (a BYODB, or a database to migrate)."""
    name = create_database(pg_server)
    try:
        yield with_dbname(pg_server, name)
    finally:
        drop_database(pg_server, name)


def pg_sqlalchemy_url(conninfo: str) -> str:
    """SQLAlchemy URL (psycopg driver) for a libpq conninfo or URL."""
    p = conninfo_to_dict(conninfo)
    host = p.get("host", "")
    port = p.get("port", "5432")
    user = p.get("user", "postgres")
    db = p.get("dbname", "postgres")
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}@/{db}?host={host}&port={port}"
    return f"postgresql+psycopg://{user}@{host}:{port}/{db}"


@pytest.fixture
def byodb_pg_url(empty_pg_db: str) -> str:
    """SQLAlchemy URL of a fresh, empty PostgreSQL BYODB."""
    return pg_sqlalchemy_url(empty_pg_db)


def fresh_pg_url(pg_server: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database on ``pg_server``, dropped after."""
    name = create_database(pg_server)
    try:
        yield pg_sqlalchemy_url(with_dbname(pg_server, name))
    finally:
        drop_database(pg_server, name)


@pytest.fixture
def second_pg_url(pg_server: str) -> Iterator[str]:
    """SQLAlchemy URL of another fresh, empty PostgreSQL database on the same server as byodb_pg_url."""
    yield from fresh_pg_url(pg_server)


@pytest.fixture(scope="session")
def mysql_server() -> str | None:
    url = os.environ.get("SCHEMASAGA_TEST_MYSQL_URL", LOCAL_MYSQL)
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    try:
        pymysql.connect(
            host=u.host or "127.0.0.1",
            port=u.port or 3306,
            user=u.username or "root",
            password=u.password or "",
            connect_timeout=2,
        ).close()
    except pymysql.err.OperationalError:
        if os.environ.get("CI"):
            pytest.fail(f"MariaDB/MySQL is required under CI but {u.host}:{u.port} is unreachable")
        return None
    return url


@contextlib.contextmanager
def mysql_database(server: str | None) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty MariaDB/MySQL database, dropped afterwards."""
    if server is None:
        pytest.skip("no MariaDB/MySQL server reachable")
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(server)
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield str(u.set(database=name).render_as_string(hide_password=False))
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        conn.close()


@pytest.fixture
def byodb_mysql_url(mysql_server: str | None) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty MariaDB/MySQL database."""
    with mysql_database(mysql_server) as url:
        yield url


@pytest.fixture
def second_mysql_url(mysql_server: str | None) -> Iterator[str]:
    """SQLAlchemy URL of another fresh, empty database on the server of byodb_mysql_url."""
    with mysql_database(mysql_server) as url:
        yield url


@pytest.fixture
def byodb_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'byodb.sqlite3'}"


@pytest.fixture
def second_sqlite_url(tmp_path: Path) -> str:
    """Another SQLite file in the directory of byodb_sqlite_url."""
    return f"sqlite:///{tmp_path / 'second.sqlite3'}"


def another_spelling(url: str, tmp_path: Path, *, how: str = "host") -> str:
    """The same database under another URL: ``localhost`` for ``127.0.0.1`` (and back), ``/dir/.`` for a
    socket directory; for SQLite the file through a symbolic link to its directory in ``tmp_path``
    (``how="symlink"``) or through ``..`` (``how="dotdot"``)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        path = Path(u.database or "")
        if how == "dotdot":
            return f"sqlite:///{path.parent / '..' / path.parent.name / path.name}"
        link = tmp_path / f"link_{uuid.uuid4().hex[:8]}"
        link.symlink_to(path.parent, target_is_directory=True)
        return f"sqlite:///{link / path.name}"
    if u.host:
        host = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}[u.host]
        return u.set(host=host).render_as_string(hide_password=False)
    socket = str(u.query["host"])
    return u.update_query_dict({"host": f"{socket.rstrip('/')}/."}).render_as_string(hide_password=False)


def table_events(client: Any, table_id: Any) -> list[dict[str, Any]]:
    """Every event of a table, oldest first, following the pages of ``GET /v1/tables/{id}/events`` (a
    synchronous httpx client)."""
    events: list[dict[str, Any]] = []
    url: str | None = f"/v1/tables/{table_id}/events?limit=1000"
    while url is not None:
        r = client.get(url)
        assert r.status_code == 200, r.text
        events += r.json()
        url = r.links.get("next", {}).get("url")
    return events


def error_of(response: Any) -> dict[str, Any]:
    """The error of an answer as ``{"code", "message", "details"?}``, whichever shape it has, checking it
    has the right one: RFC 9457 problem details under ``/v1``, the demo's ``{"status": "error", "error"}``
    elsewhere."""
    body: dict[str, Any] = response.json()
    if response.request.url.path.startswith("/v1/") or response.request.url.path == "/v1":
        assert response.headers["content-type"] == "application/problem+json", response.text
        assert body["status"] == response.status_code, response.text
        assert body["type"] == f"urn:schemasaga:problem:{body['code']}", response.text
        assert body["title"] and body["detail"], response.text
        error = {"code": body["code"], "message": body["detail"]}
        if "details" in body:
            error["details"] = body["details"]
        return error
    assert body["status"] == "error", response.text
    error_body: dict[str, Any] = body["error"]
    return error_body
