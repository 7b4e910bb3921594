"""The database registry turned against the service, each attack as an adversarial test found it: the core
database registered as a user's database, Unix sockets, SQLite companion files, paths that resolve elsewhere
later, and servers that accept connections and never answer. Real servers throughout; nothing here
resolves a host name (every address is 127.0.0.1 or a socket)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from schemasaga.bootstrap import Container, check_settings
from schemasaga.byodb.adapter import ByodbAdapter, DdlLimits
from schemasaga.byodb.errors import TransientByodbError
from schemasaga.config import ConfigurationError, Settings
from schemasaga.secrets import generate_key
from tests.conftest import error_of, with_dbname
from tests.integration.conftest import fast_settings, running_service, wait_operation

KEY = generate_key()


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
    async with running_service(make_settings(), worker=False) as container:
        yield container


@pytest.fixture
async def api(svc: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with http(svc) as c:
        yield c


async def traces(container: Container, name: str) -> tuple[int, int]:
    """Events in the database's stream, and its rm_databases rows."""
    events = await container.store.read_stream(f"Database${name}")
    async with container.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM rm_databases WHERE name = %s", (name,))
        row = await cur.fetchone()
    assert row is not None
    return len(events), int(row[0])


async def assert_refused(
    api: httpx.AsyncClient, svc: Container, *, name: str, url: str, status: int, code: str
) -> str:
    before = len(await svc.store.read_all())
    r = await api.post("/v1/databases", json={"name": name, "url": url})
    refused = error_of(r)["code"] if r.status_code >= 400 else None
    assert (r.status_code, refused) == (status, code), (name, r.text)
    assert await traces(svc, name) == (0, 0)
    assert len(await svc.store.read_all()) == before
    message: str = error_of(r)["message"]
    return message


# -- 1. the core database, and Unix sockets --------------------------------------------------------------


@pytest.fixture
def other_role(core_db: str, pg_server: str) -> Iterator[str]:
    """A role whose search_path puts its DDL in another schema of the core database than the service's."""
    role = f"other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"ALTER ROLE {role} SET search_path = pg_catalog")
    try:
        yield role
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


async def test_the_core_database_cannot_be_registered_under_any_spelling(
    api: httpx.AsyncClient, svc: Container, core_db: str, other_role: str, tmp_path: Path
) -> None:
    core = conninfo_to_dict(core_db)
    host, port, name = core["host"], core.get("port", "5432"), core["dbname"]
    assert not str(host).startswith("/"), "the tests' server is reached over TCP"
    spellings = {
        "plain": f"postgresql+psycopg://postgres@{host}:{port}/{name}",
        "alias_driver": f"postgres://postgres@{host}:{port}/{name}?sslmode=disable",
        "encoded_name": f"postgresql://postgres@[{host}]:{port}/{quote(name[:1], safe='')}{name[1:]}",
        "zero_port": f"postgresql+psycopg://postgres@{host}:0{port}/{name}",
        "other_schema": f"postgresql+psycopg://{other_role}@{host}:{port}/{name}",
    }
    for label, url in spellings.items():
        message = await assert_refused(api, svc, name=label, url=url, status=403, code="own_database")
        assert "own core database" in message
    # No Unix socket unless its directory is allowed: refused before any connection is tried.
    message = await assert_refused(
        api,
        svc,
        name="socket",
        url=f"postgresql+psycopg://postgres@/{name}?host={tmp_path}&port={port}",
        status=403,
        code="socket_not_allowed",
    )
    assert "SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS" in message
    # Another database of the same (shared, not embedded) server stays a user's database.
    with psycopg.connect(with_dbname(core_db, "postgres"), autocommit=True) as conn:
        other = f"t_{uuid.uuid4().hex[:16]}"
        conn.execute(f"CREATE DATABASE {other}")
    try:
        r = await api.post(
            "/v1/databases",
            json={"name": "other", "url": f"postgresql+psycopg://postgres@{host}:{port}/{other}"},
        )
        assert r.status_code == 201, r.text
        assert (await api.delete("/v1/databases/other")).status_code == 200
    finally:
        svc.connections.forget("other")
        with psycopg.connect(with_dbname(core_db, "postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data dir for the embedded server (not under tmp_path: see test_embedded.py's data_dir)."""
    base = Path(tempfile.mkdtemp(prefix="schemasaga-registry-"))
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_no_database_of_the_embedded_server_can_be_registered_through_its_socket(
    embedded_data_dir: Path,
) -> None:
    # The attack as found: GET /v1/databases shows the default database's host, the embedded server's
    # socket directory, where every local user is trusted.
    settings = fast_settings(data_dir=embedded_data_dir, catalog_refresh_interval=3600.0)
    async with running_service(settings, worker=False) as svc, http(svc) as api:
        shown = (await api.get("/v1/databases/default")).json()
        default = make_url(svc.resolved.byodb_url)
        assert shown["host"] == default.query["host"]
        core = default.set(database="schemasaga").render_as_string(hide_password=False)
        await assert_refused(api, svc, name="core", url=core, status=403, code="socket_not_allowed")
    # Even where the operator allows the socket's directory, no database of that server may be had.
    allowed = settings.model_copy(update={"byodb_allowed_socket_dirs": str(default.query["host"])})
    async with running_service(allowed, worker=False) as svc, http(svc) as api:
        for database in ("schemasaga", "postgres", "template1", "byodb"):
            url = default.set(database=database).render_as_string(hide_password=False)
            await assert_refused(api, svc, name=f"x_{database}", url=url, status=403, code="own_database")


MYSQL_SOCKET = Path("/var/run/mysqld/mysqld.sock")


@pytest.mark.mariadb
async def test_a_unix_socket_is_used_only_in_a_directory_the_operator_allows(
    make_settings: Callable[..., Settings], byodb_mysql_url: str
) -> None:
    if not MYSQL_SOCKET.is_socket():
        pytest.skip(f"no MariaDB socket at {MYSQL_SOCKET}")
    database = make_url(byodb_mysql_url).database
    url = f"mysql+pymysql://root@/{database}?unix_socket={MYSQL_SOCKET}"
    async with running_service(make_settings(), worker=False) as svc, http(svc) as api:
        await assert_refused(api, svc, name="sock", url=url, status=403, code="socket_not_allowed")
    # Allowed at another spelling of the directory: symbolic links and ".." are resolved.
    allowed = f"{MYSQL_SOCKET.parent}/../{MYSQL_SOCKET.parent.name}/"
    async with (
        running_service(make_settings(byodb_allowed_socket_dirs=allowed), worker=False) as svc,
        http(svc) as api,
    ):
        r = await api.post("/v1/databases", json={"name": "sock", "url": url})
        assert r.status_code == 201, r.text
        assert r.json()["host"] == str(MYSQL_SOCKET)


# -- 3. SQLite companion files ---------------------------------------------------------------------------


async def test_a_sqlite_databases_companion_files_cannot_be_registered(
    api: httpx.AsyncClient, svc: Container, tmp_path: Path
) -> None:
    main = tmp_path / "main.db"
    r = await api.post("/v1/databases", json={"name": "main", "url": f"sqlite:///{main}"})
    assert r.status_code == 201, r.text
    # A writer in WAL mode keeps main.db-wal and main.db-shm while it is open.
    writer = sqlite3.connect(main)
    try:
        writer.execute("PRAGMA journal_mode = WAL")
        writer.execute("CREATE TABLE notes (x INTEGER)")
        writer.execute("INSERT INTO notes VALUES (1)")
        writer.commit()
        assert (tmp_path / "main.db-wal").exists() and (tmp_path / "main.db-shm").exists()
        os.link(tmp_path / "main.db-wal", tmp_path / "hardlink.db")  # the WAL under a database's name
        (tmp_path / "symlink.db").symlink_to(tmp_path / "main.db-shm")
        for name, path in [
            ("wal", "main.db-wal"),
            ("shm", "main.db-shm"),
            ("journal", "main.db-journal"),  # absent now: SQLite would create it, and so would we
            ("super_journal", "main.db-mj0A1B2C3D"),
            ("hardlink", "hardlink.db"),
            ("symlink", "symlink.db"),
        ]:
            await assert_refused(
                api,
                svc,
                name=name,
                url=f"sqlite:///{tmp_path / path}",
                status=403,
                code="sqlite_companion_file",
            )
        assert not (tmp_path / "main.db-journal").exists()
        assert writer.execute("SELECT x FROM notes").fetchall() == [(1,)]
    finally:
        writer.close()


# -- 4. the path that is checked is the path that is stored ----------------------------------------------


async def test_a_sqlite_file_is_registered_by_its_real_path(
    api: httpx.AsyncClient, svc: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path.resolve()
    monkeypatch.chdir(tmp_path)  # /proc/self/cwd is the SQLite directory, for this process only
    (tmp_path / "alias.db").symlink_to(tmp_path / "target.db")
    for name, url, expected in [
        ("cwd", "sqlite:////proc/self/cwd/cwd.db", real / "cwd.db"),
        ("alias", f"sqlite:///{tmp_path / 'alias.db'}", real / "target.db"),
        ("dotdot", f"sqlite:///{tmp_path / '..' / tmp_path.name / 'dots.db'}", real / "dots.db"),
    ]:
        r = await api.post("/v1/databases", json={"name": name, "url": url})
        assert r.status_code == 201, r.text
        assert r.json()["database"] == str(expected)
        [event] = await svc.store.read_stream(f"Database${name}")
        assert event.data["display"]["database"] == str(expected)
        assert make_url(svc.secrets.decrypt(event.data["url_encrypted"])).database == str(expected)
        assert svc.connections.adapter(name) is not None
    assert (real / "target.db").exists() and (real / "cwd.db").exists()

    for label, path in [("newline", "a%0Ab.db"), ("escape", "a%1B[31mb.db"), ("raw_tab", "a\tb.db")]:
        await assert_refused(
            api, svc, name=label, url=f"sqlite:///{tmp_path}/{path}", status=422, code="invalid_url"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.db", "cwd.db", "dots.db", "target.db"]


# -- 5. a server that accepts connections and never answers ----------------------------------------------


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        """Stop, and close every connection: the clients waiting on them fail at once."""
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self._sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


async def _until_accepting_stops(hole: BlackHole, expected: int) -> None:
    """Until the listener holds ``expected`` connections, or none came for a while (every thread that
    could connect has)."""
    count, quiet = -1, 0
    while len(hole.accepted) < expected and quiet < 20:
        quiet = quiet + 1 if len(hole.accepted) == count else 0
        count = len(hole.accepted)
        await asyncio.sleep(0.1)


async def test_servers_that_never_answer_delay_no_saga_of_another_database(
    make_settings: Callable[..., Settings], black_hole: BlackHole
) -> None:
    # Connections to the black hole last the connect timeout: far longer than a saga on a healthy
    # database takes, so the order of the outcomes says whether one waited for the other.
    settings = make_settings(byodb_connect_timeout=20)
    async with running_service(settings) as svc, http(svc) as api:
        urls = [
            f"{driver}://root@127.0.0.1:{black_hole.port}/db{i}"
            for i in range(6)
            for driver in ("mysql+pymysql", "postgresql+psycopg")
        ]
        registrations = [
            asyncio.create_task(api.post("/v1/databases", json={"name": f"hole_{i}", "url": url}))
            for i, url in enumerate(urls)
        ]
        await _until_accepting_stops(black_hole, len(urls))
        assert black_hole.accepted, "the probes connect"

        r = await api.post("/table/create", json={"name": "healthy", "database": "default"})
        assert r.status_code == 200, r.text
        saga = asyncio.create_task(wait_operation(api, r.json()["operation_id"], timeout=120))
        done, _ = await asyncio.wait({saga, *registrations}, return_when=asyncio.FIRST_COMPLETED)
        assert saga in done, "a registration ended before the healthy database's saga did"
        assert saga.result()["status"] == "completed"
        assert not any(task.done() for task in registrations), "the probes still hang"
        assert len(black_hole.accepted) == len(urls)  # every probe connected, none waited for a thread

        black_hole.close()
        for i, answer in enumerate(await asyncio.gather(*registrations)):
            assert answer.status_code == 422, answer.text
            assert error_of(answer)["code"] == "database_unreachable"
            assert await traces(svc, f"hole_{i}") == (0, 0)


async def test_each_database_has_its_own_threads(tmp_path: Path) -> None:
    limits = DdlLimits(threads=2)
    with (
        ByodbAdapter(f"sqlite:///{tmp_path / 'stuck.db'}", limits=limits) as stuck,
        ByodbAdapter(f"sqlite:///{tmp_path / 'free.db'}", limits=limits) as free,
    ):
        release = threading.Event()
        held = [asyncio.ensure_future(stuck.run(release.wait)) for _ in range(3)]  # one more than it has
        try:
            # Every thread of one database is held, and its next call waits for one of them...
            await asyncio.sleep(0)
            assert not any(task.done() for task in held)
            # ...while another database's call runs at once, on its own threads.
            assert await free.run(free.server_version)
            assert not any(task.done() for task in held)
        finally:
            release.set()
        assert await asyncio.gather(*held) == [True, True, True]
        # A saga may still hold an adapter that a reload replaced (and disposed): it keeps working.
        stuck.dispose()
        assert await stuck.run(stuck.server_version)


async def test_a_mysql_server_that_never_greets_is_given_up_after_the_connect_timeout(
    black_hole: BlackHole,
) -> None:
    # PyMySQL read the greeting with the read timeout, as long as the longest statement (here 10 min).
    # The reference is a PostgreSQL connection to the same black hole with a longer connect timeout,
    # which libpq ends by itself: the MySQL attempt must end first.
    hole = f"127.0.0.1:{black_hole.port}"
    mysql = ByodbAdapter(
        f"mysql+pymysql://root@{hole}/x", limits=DdlLimits(connect_timeout_s=1, statement_timeout_ms=600_000)
    )
    reference = ByodbAdapter(f"postgresql+psycopg://u@{hole}/x", limits=DdlLimits(connect_timeout_s=30))
    try:
        attempts = [asyncio.ensure_future(a.run(a.ping)) for a in (mysql, reference)]
        done, _ = await asyncio.wait(attempts, return_when=asyncio.FIRST_COMPLETED)
        assert done == {attempts[0]}, "the PostgreSQL reference ended first"
        with pytest.raises(TransientByodbError, match=r"(?i)timed out|lost connection"):
            attempts[0].result()
        black_hole.close()
        with pytest.raises(TransientByodbError):
            await attempts[1]
    finally:
        mysql.dispose()
        reference.dispose()


def test_a_relative_socket_directory_stops_the_start() -> None:
    with pytest.raises(ConfigurationError, match=r"SCHEMASAGA_BYODB_ALLOWED_SOCKET_DIRS.*'run/postgresql'"):
        check_settings(Settings(byodb_allowed_socket_dirs="/var/run/mysqld,run/postgresql"))
