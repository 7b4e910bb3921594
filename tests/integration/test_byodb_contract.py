"""One contract for the BYODB adapter, run against PostgreSQL, MariaDB/MySQL and SQLite.

Every test gets a fresh empty database of its engine (see ``conftest``) and talks to the real server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from schemasaga.byodb import (
    ByodbAdapter,
    ByodbError,
    DdlLimits,
    InvalidIdentifier,
    PermanentByodbError,
    TransientByodbError,
    classify,
    engines,
    open_adapter,
)
from schemasaga.byodb.errors import TableThere
from schemasaga.byodb.identifiers import MAX_LENGTH, index_name
from schemasaga.domain.changes import AddColumn
from schemasaga.domain.changes import CreateTable as CreateTableChange
from schemasaga.domain.columns import (
    DEFAULT_COLUMNS,
    Column,
    ColumnType,
    Index,
    TableSchema,
    canonical_default,
)
from schemasaga.domain.schema import DifferenceKind, Expression, LiveIndex, diff
from tests.conftest import another_spelling

ENGINES = [
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mariadb),
    pytest.param("sqlite", id="sqlite"),
]
FIXTURES = {"postgresql": "byodb_pg_url", "mysql": "byodb_mysql_url", "sqlite": "byodb_sqlite_url"}
FAST = DdlLimits(lock_timeout_ms=500, statement_timeout_ms=10_000, connect_timeout_s=2)


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of a fresh empty database of each engine."""
    value: str = request.getfixturevalue(FIXTURES[request.param])
    return value


@pytest.fixture
def adapter(url: str) -> Iterator[ByodbAdapter]:
    a = open_adapter(url, limits=FAST)
    try:
        yield a
    finally:
        a.dispose()


def shape(adapter: ByodbAdapter, name: str) -> list[tuple[str, ColumnType | None, bool, bool]]:
    live = adapter.inspect_table(name)
    assert live is not None, f"table {name} is missing"
    return [(c.name, c.type, c.nullable, c.primary_key) for c in live.columns]


# -- creating ------------------------------------------------------------------------------------


def test_create_with_default_columns_then_inspect(adapter: ByodbAdapter) -> None:
    assert adapter.create_table("people", DEFAULT_COLUMNS) is True

    assert shape(adapter, "people") == [
        ("id", ColumnType.INTEGER, False, True),
        ("name", ColumnType.TEXT, True, False),
        ("created_at", ColumnType.TIMESTAMP, True, False),
        ("updated_at", ColumnType.TIMESTAMP, True, False),
    ]
    live = adapter.inspect_table("people")
    assert live is not None and live.name == "people"
    assert all(c.raw_type for c in live.columns)


def test_create_twice_changes_nothing(adapter: ByodbAdapter, url: str) -> None:
    assert adapter.create_table("people", DEFAULT_COLUMNS) is True
    before = adapter.inspect_table("people")

    assert adapter.create_table("people", DEFAULT_COLUMNS) is False

    assert adapter.inspect_table("people") == before
    assert adapter.list_tables() == ["people"]


def test_create_refusing_an_existing_table_refuses_any_shape_and_changes_nothing(
    adapter: ByodbAdapter,
) -> None:
    """A creation's first run refuses a table already there, even one of exactly its shape, with the
    inspection that precedes its DDL (the saga needs no inspection of its own before it)."""
    adapter.create_table("people", DEFAULT_COLUMNS)
    before = adapter.inspect_table("people")

    for name, columns in (
        ("people", DEFAULT_COLUMNS),
        ("people", (*DEFAULT_COLUMNS, Column("age", ColumnType.INTEGER))),
        ("PEOPLE", DEFAULT_COLUMNS),
    ):
        with pytest.raises(TableThere) as refused:
            adapter.create_table(name, columns, refuse_existing=True)
        assert refused.value.found == "people" and refused.value.engine == adapter.engine
    assert adapter.create_table("persons", DEFAULT_COLUMNS, refuse_existing=True) is True

    assert adapter.inspect_table("people") == before
    assert adapter.list_tables() == ["people", "persons"]


def test_remembered_column_definitions_are_those_rendered_afresh(url: str) -> None:
    """The adapter remembers the column definitions it rendered (a creation renders them three times);
    a default of another type that Python holds equal (``1``, ``1.0``, ``True``) is never taken for it."""

    def schema(default: object, kind: ColumnType = ColumnType.JSON) -> TableSchema:
        column = Column("v", kind, default=canonical_default(kind, default))
        return TableSchema("t", (*DEFAULT_COLUMNS, column), ())

    schemas = [
        schema(1),
        schema(True),
        schema(1.0),
        schema(1, ColumnType.FLOAT),
        schema(1.0, ColumnType.FLOAT),
    ]
    schemas += [schema({"a": 1}), schema({"a": True}), schema([1, True]), schema(None)]
    warm = open_adapter(url, limits=FAST)
    try:
        for _ in range(2):  # the second round from memory
            for s in schemas:
                fresh = open_adapter(url, limits=FAST)
                try:
                    expected = fresh.plan_change(None, s, CreateTableChange(s)).statements
                finally:
                    fresh.dispose()
                assert warm.plan_change(None, s, CreateTableChange(s)).statements == expected, s.columns[-1]
    finally:
        warm.dispose()


def test_create_over_a_table_of_another_shape_is_permanent(adapter: ByodbAdapter) -> None:
    adapter.create_table("people", DEFAULT_COLUMNS)
    before = adapter.inspect_table("people")

    with pytest.raises(PermanentByodbError, match=r"another shape.*age"):
        adapter.create_table("people", (*DEFAULT_COLUMNS, Column("age", ColumnType.INTEGER)))
    with pytest.raises(PermanentByodbError, match="column 'name' has type"):
        adapter.create_table(
            "people", (DEFAULT_COLUMNS[0], Column("name", ColumnType.STRING), *DEFAULT_COLUMNS[2:])
        )
    with pytest.raises(PermanentByodbError, match="regardless of case"):
        adapter.create_table("People", DEFAULT_COLUMNS)

    assert adapter.inspect_table("people") == before
    assert adapter.list_tables() == ["people"]


def test_names_keep_their_case(adapter: ByodbAdapter) -> None:
    assert adapter.create_table(
        "MyTable", (Column("Id", ColumnType.INTEGER, nullable=False, primary_key=True),)
    )
    assert adapter.add_column("MyTable", Column("FirstName", ColumnType.STRING)) is True

    assert adapter.list_tables() == ["MyTable"]
    assert [c.name for c in adapter.inspect_table("MyTable").columns] == ["Id", "FirstName"]  # type: ignore[union-attr]
    # a column differing only in case is the same column
    with pytest.raises(PermanentByodbError, match="spelled 'FirstName'"):
        adapter.add_column("MyTable", Column("firstname", ColumnType.STRING))


def test_a_view_of_that_name_is_permanent(adapter: ByodbAdapter, url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE VIEW people AS SELECT 1 AS id"))
    engine.dispose()

    with pytest.raises(PermanentByodbError, match="is a view"):
        adapter.create_table("people", DEFAULT_COLUMNS)
    assert adapter.list_tables() == []


# -- columns -------------------------------------------------------------------------------------


def test_add_a_column_of_every_type_round_trips(adapter: ByodbAdapter) -> None:
    adapter.create_table("things", DEFAULT_COLUMNS)

    for column_type in ColumnType:
        assert adapter.add_column("things", Column(f"c_{column_type.value}", column_type)) is True

    live = adapter.inspect_table("things")
    assert live is not None
    for column_type in ColumnType:
        column = live.column(f"c_{column_type.value}")
        assert column is not None
        assert (column.type, column.nullable, column.primary_key) == (column_type, True, False), column
    # and re-adding any of them is a no-op: the inspected type is the one asked for
    for column_type in ColumnType:
        assert adapter.add_column("things", Column(f"c_{column_type.value}", column_type)) is False


def test_create_with_every_type_is_idempotent(adapter: ByodbAdapter) -> None:
    columns = (DEFAULT_COLUMNS[0], *(Column(f"c_{t.value}", t) for t in ColumnType))
    assert adapter.create_table("everything", columns) is True
    assert adapter.create_table("everything", columns) is False


def _rows(url: str, statements: list[str], query: str) -> list[tuple[object, ...]]:
    """Run ``statements`` then ``query`` on a connection of our own (names here need no quoting)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
            return [tuple(row) for row in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def test_not_null_column_with_a_default(adapter: ByodbAdapter, url: str) -> None:
    adapter.create_table("things", DEFAULT_COLUMNS)
    _rows(url, ["INSERT INTO things (id, name) VALUES (1, 'before')"], "SELECT 1")
    column = Column("flag", ColumnType.INTEGER, nullable=False, default=7)

    assert adapter.add_column("things", column) is True
    assert adapter.add_column("things", column) is False

    live = adapter.inspect_table("things")
    assert live is not None and live.column("flag") == live.columns[-1]
    assert live.columns[-1].nullable is False
    # The server fills the default in: into the row that was there, and into a row that leaves it out.
    rows = _rows(url, ["INSERT INTO things (id, name) VALUES (2, 'after')"], "SELECT id, flag FROM things")
    assert sorted(rows) == [(1, 7), (2, 7)]


def test_a_table_is_created_with_its_columns_defaults(adapter: ByodbAdapter, url: str) -> None:
    columns = (
        *DEFAULT_COLUMNS,
        Column("status", ColumnType.STRING, nullable=False, default="new"),
        Column("score", ColumnType.INTEGER, default=10),
        Column("note", ColumnType.STRING),  # no default: NULL
    )
    assert adapter.create_table("orders", columns) is True
    assert adapter.create_table("orders", columns) is False

    rows = _rows(
        url,
        [
            "INSERT INTO orders (id) VALUES (1)",
            "INSERT INTO orders (id, status, score) VALUES (2, 'paid', 3)",
        ],
        "SELECT id, status, score, note FROM orders",
    )
    assert sorted(rows) == [(1, "new", 10, None), (2, "paid", 3, None)]


def test_add_column_twice_and_with_another_type(adapter: ByodbAdapter) -> None:
    adapter.create_table("people", DEFAULT_COLUMNS)

    assert adapter.add_column("people", Column("age", ColumnType.INTEGER)) is True
    assert adapter.add_column("people", Column("age", ColumnType.INTEGER)) is False
    with pytest.raises(PermanentByodbError, match=r"already exists.*has type integer instead of text"):
        adapter.add_column("people", Column("age", ColumnType.TEXT))

    assert shape(adapter, "people")[-1] == ("age", ColumnType.INTEGER, True, False)


def test_add_column_to_a_missing_table_is_permanent(adapter: ByodbAdapter) -> None:
    with pytest.raises(PermanentByodbError, match="does not exist"):
        adapter.add_column("ghosts", Column("age", ColumnType.INTEGER))


def test_drop_column_twice(adapter: ByodbAdapter) -> None:
    adapter.create_table("people", (*DEFAULT_COLUMNS, Column("age", ColumnType.INTEGER)))

    assert adapter.drop_column("people", "age") is True
    assert adapter.drop_column("people", "age") is False

    assert [c[0] for c in shape(adapter, "people")] == ["id", "name", "created_at", "updated_at"]
    with pytest.raises(PermanentByodbError, match="primary key"):
        adapter.drop_column("people", "id")


# -- tables --------------------------------------------------------------------------------------


def test_drop_table_twice(adapter: ByodbAdapter) -> None:
    adapter.create_table("people", DEFAULT_COLUMNS)

    assert adapter.drop_table("people") is True
    assert adapter.drop_table("people") is False

    assert adapter.inspect_table("people") is None


def test_list_tables(adapter: ByodbAdapter) -> None:
    assert adapter.list_tables() == []
    for name in ("b_table", "a_table", "c_table"):
        adapter.create_table(name, DEFAULT_COLUMNS)
    adapter.drop_table("c_table")

    assert adapter.list_tables() == ["a_table", "b_table"]


def test_server_version_and_ping(adapter: ByodbAdapter) -> None:
    adapter.ping()
    assert adapter.server_version()[0].isdigit()


SECOND = {"postgresql": "second_pg_url", "mysql": "second_mysql_url", "sqlite": "second_sqlite_url"}


def test_identity_is_the_databases_not_the_urls(
    adapter: ByodbAdapter, url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    mine = adapter.identity()
    assert mine.stored is not None and mine.stored.startswith(f"{adapter.engine}.")
    with open_adapter(another_spelling(url, tmp_path, how="symlink"), limits=FAST) as respelled:
        theirs = respelled.identity()
    assert theirs.same_as(mine) and theirs.stored == mine.stored
    # Another database of the same server.
    with open_adapter(request.getfixturevalue(SECOND[adapter.engine]), limits=FAST) as other:
        assert not other.identity().same_as(mine) and other.identity().stored != mine.stored


# -- identifiers ---------------------------------------------------------------------------------

BAD_NAMES: dict[str, list[tuple[str, str]]] = {
    "postgresql": [
        ("a" * 64, "64 bytes long; postgresql allows at most 63 bytes"),
        ("é" * 32, "64 bytes long"),  # 32 characters, 64 bytes: PostgreSQL counts bytes
        ("select", "reserved word in postgresql"),
        ("user", "reserved word in postgresql"),
    ],
    "mysql": [
        ("a" * 65, "65 characters long; mysql allows at most 64"),
        ("é" * 32, "invalid"),  # short enough in characters; refused for its characters
        ("select", "reserved word in mysql"),
        ("interval", "reserved word in mysql"),
    ],
    "sqlite": [
        ("a" * 129, "129 characters long; sqlite allows at most 128"),
        ("sqlite_stats", "starts with 'sqlite_'"),
        ("select", "reserved word in sqlite"),
        ("autoincrement", "reserved word in sqlite"),
    ],
}
BAD_EVERYWHERE = [
    ("", "empty"),
    ("1abc", "invalid"),
    ("has space", "invalid"),
    ('quo"te', "invalid"),
    ("drop table x; --", "invalid"),
    ("ok\n", "invalid"),
]


def test_identifiers_are_validated_per_engine(adapter: ByodbAdapter) -> None:
    engine = adapter.engine
    longest = "a" * MAX_LENGTH[engine]
    assert adapter.create_table(longest, DEFAULT_COLUMNS) is True
    assert adapter.add_column(longest, Column("b" * MAX_LENGTH[engine], ColumnType.TEXT)) is True

    for name, message in BAD_NAMES[engine] + BAD_EVERYWHERE:
        with pytest.raises(InvalidIdentifier, match=message):
            adapter.create_table(name, DEFAULT_COLUMNS)
        with pytest.raises(InvalidIdentifier, match=message):
            adapter.add_column(longest, Column(name, ColumnType.TEXT))
        with pytest.raises(PermanentByodbError):  # an invalid name is a permanent failure of the step
            adapter.drop_table(name)

    assert adapter.list_tables() == [longest]


# -- failures ------------------------------------------------------------------------------------


# SQLite has no server; its transient failure is the lock test.
@pytest.mark.parametrize("url", [p for p in ENGINES if p.id != "sqlite"], indirect=True)
def test_unreachable_server_is_transient(adapter: ByodbAdapter, url: str) -> None:
    closed = make_url(url).set(port=1).render_as_string(hide_password=False)
    with open_adapter(closed, limits=FAST) as down:
        with pytest.raises(TransientByodbError, match="ping") as info:
            down.ping()
        assert info.value.engine == adapter.engine
        with pytest.raises(TransientByodbError):
            down.create_table("people", DEFAULT_COLUMNS)


def test_missing_database_is_permanent(adapter: ByodbAdapter, url: str, tmp_path: object) -> None:
    if adapter.engine == "sqlite":
        missing = f"sqlite:///{tmp_path}/no/such/dir/db.sqlite3"
    else:
        missing = make_url(url).set(database="no_such_db_here").render_as_string(hide_password=False)
    with open_adapter(missing, limits=FAST) as bad, pytest.raises(PermanentByodbError):
        bad.ping()


def test_lock_held_by_another_session_times_out_as_transient(url: str) -> None:
    limits = DdlLimits(lock_timeout_ms=300, statement_timeout_ms=10_000, connect_timeout_s=2)
    with open_adapter(url, limits=limits) as adapter:
        adapter.create_table("people", DEFAULT_COLUMNS)
        with _lock_held(adapter.engine, url, "people"):
            started = time.monotonic()
            with pytest.raises(TransientByodbError) as info:
                adapter.add_column("people", Column("age", ColumnType.INTEGER))
            elapsed = time.monotonic() - started
        # MySQL counts lock_wait_timeout in whole seconds: 300 ms becomes 1 s there
        assert elapsed < 3, elapsed
        assert "lock" in str(info.value).lower()
        # once the lock is gone the same step succeeds
        assert adapter.add_column("people", Column("age", ColumnType.INTEGER)) is True


@contextmanager
def _lock_held(engine: str, url: str, table: str) -> Iterator[None]:
    """Another session holds a shared lock on ``table`` (on SQLite the write lock) during the ``with``."""
    if engine == "sqlite":
        with _SqliteWriter(make_url(url).database or ""):
            yield
        return
    other = sa.create_engine(url)
    try:
        with other.connect() as conn:
            # a shared lock until the transaction ends; DDL needs an exclusive one
            if engine == "postgresql":
                conn.execute(sa.text(f'LOCK TABLE "{table}" IN ACCESS SHARE MODE'))
            else:
                conn.execute(sa.text(f"SELECT * FROM `{table}`")).all()
            yield
            conn.rollback()
    finally:
        other.dispose()


class _SqliteWriter:
    """A second SQLite connection holding the write lock while the ``with`` lasts."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> _SqliteWriter:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def test_permission_denied_is_permanent(adapter: ByodbAdapter, url: str) -> None:
    adapter.create_table("people", DEFAULT_COLUMNS)  # the database exists and has a table
    with _RestrictedUrl(adapter.engine, url) as restricted, open_adapter(restricted, limits=FAST) as weak:
        assert weak.list_tables() == ["people"]  # it can read the catalog...
        with pytest.raises(PermanentByodbError) as info:  # ...but not change anything
            weak.create_table("guests", DEFAULT_COLUMNS)
        message = str(info.value).lower()
        assert "denied" in message or "readonly" in message, message
        assert "create table 'guests'" in message
        with pytest.raises(PermanentByodbError):
            weak.drop_table("people")
    assert adapter.list_tables() == ["people"]


class _RestrictedUrl:
    """A URL for the same database as an account that may read but not change the schema."""

    def __init__(self, engine: str, url: str) -> None:
        self.engine, self.url = engine, make_url(url)
        self.account = f"weak_{uuid.uuid4().hex[:12]}"
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT") if engine != "sqlite" else None

    def __enter__(self) -> str:
        if self.engine == "sqlite":
            return f"sqlite:///file:{self.url.database}?mode=ro&uri=true"
        assert self.admin is not None
        with self.admin.connect() as conn:
            if self.engine == "postgresql":
                # PostgreSQL >= 15 gives PUBLIC no CREATE on schema public: a new role can connect and read
                conn.execute(sa.text(f"CREATE ROLE {self.account} LOGIN"))
                return self.url.set(username=self.account).render_as_string(hide_password=False)
            conn.execute(sa.text(f"CREATE USER '{self.account}'@'%' IDENTIFIED BY 'pw'"))
            conn.execute(sa.text(f"GRANT SELECT ON `{self.url.database}`.* TO '{self.account}'@'%'"))
            return self.url.set(username=self.account, password="pw").render_as_string(hide_password=False)

    def __exit__(self, *_exc: object) -> None:
        if self.admin is None:
            return
        with self.admin.connect() as conn:
            if self.engine == "postgresql":
                conn.execute(sa.text(f"DROP ROLE IF EXISTS {self.account}"))
            else:
                conn.execute(sa.text(f"DROP USER IF EXISTS '{self.account}'@'%'"))
        self.admin.dispose()


def test_a_failure_between_statements_leaves_nothing(url: str) -> None:
    """A crash after CREATE TABLE: PostgreSQL and SQLite roll back; MariaDB, which has already
    committed the CREATE, drops the table again (compensation)."""
    seen: list[bool] = []
    observer = open_adapter(url, limits=FAST)

    def crash(label: str) -> None:
        assert label == "create_table:created"
        # what another session sees at this instant: only MariaDB has already committed the table
        seen.append(observer.inspect_table("people") is not None)
        raise ConnectionResetError("injected failure")

    adapter = ByodbAdapter(url, limits=FAST, between_statements=crash)
    try:
        with pytest.raises(ByodbError, match="injected failure"):
            adapter.create_table("people", DEFAULT_COLUMNS)

        assert seen == [adapter.engine == "mysql"]
        assert adapter.inspect_table("people") is None
        assert adapter.list_tables() == []
        # the retry of the step (without the crash) does the whole work
        with open_adapter(url) as retry:
            assert retry.create_table("people", DEFAULT_COLUMNS) is True
    finally:
        adapter.dispose()
        observer.dispose()


def test_an_sqlite_without_drop_column_is_refused(
    byodb_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.35 cannot drop a column; such a database is refused when it is opened, with
    why, rather than failing a removal half-way through a saga."""
    from schemasaga.byodb import adapter as adapter_module

    monkeypatch.setattr(adapter_module.sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(adapter_module.sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(PermanentByodbError, match=r"SQLite 3\.34\.1 cannot drop columns.*3\.35"):
        ByodbAdapter(byodb_sqlite_url)


def test_sqlite_connections_use_wal_and_busy_timeout(byodb_sqlite_url: str) -> None:
    with ByodbAdapter(byodb_sqlite_url, limits=DdlLimits(lock_timeout_ms=1234)) as adapter:
        adapter.create_table("people", DEFAULT_COLUMNS)
        with adapter._sa.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 1234


@pytest.mark.mariadb
def test_mysql_session_limits(byodb_mysql_url: str) -> None:
    limits = DdlLimits(lock_timeout_ms=2500, statement_timeout_ms=7000)
    with ByodbAdapter(byodb_mysql_url, limits=limits) as adapter, adapter._sa.connect() as conn:
        row = conn.exec_driver_sql("SELECT @@lock_wait_timeout, @@innodb_lock_wait_timeout, VERSION()").one()
        assert (row[0], row[1]) == (3, 3)
        if "mariadb" in row[2].lower():
            assert conn.exec_driver_sql("SELECT @@max_statement_time").scalar_one() == 7.0


def test_postgresql_step_sets_local_timeouts(byodb_pg_url: str) -> None:
    limits = DdlLimits(lock_timeout_ms=1500, statement_timeout_ms=4000)
    with ByodbAdapter(byodb_pg_url, limits=limits) as adapter:
        with adapter._step("probe") as step:  # set by the step's first inspection...
            assert adapter._inspect(step, "nothing") is None
            assert step.conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == "1500ms"
            assert step.conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "4s"
        with adapter._step("probe") as step:  # ...or before a DDL statement that was not preceded by one
            adapter._ddl(step, sa.text("CREATE TABLE probe (id integer)"))
            assert step.conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == "1500ms"
        with adapter._step("read", ddl=False) as step:  # reads keep the session's settings
            assert adapter._inspect(step, "probe") is not None
            assert step.conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == "0"
        with adapter._sa.connect() as conn:  # SET LOCAL: gone after the step's transaction
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == "0"


def _end_sessions(engine: str, url: str) -> None:
    """End the adapter's server sessions behind its back (as a server restart would)."""
    if engine == "postgresql":
        dbname = make_url(url).database
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'schemasaga-byodb'",
                (dbname,),
            )
        return
    u = make_url(url)
    with pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "") as c:
        with c.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", (u.database,))
            for (pid,) in cur.fetchall():
                cur.execute(f"KILL {int(pid)}")


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("postgresql", id="postgresql"),
        pytest.param("mysql", id="mysql", marks=pytest.mark.mariadb),
    ],
)
def test_a_pooled_connection_is_pinged_only_after_sitting_idle(
    engine: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saga's steps follow one another within milliseconds: no ping round trip before each. A
    connection idle past ``PING_AFTER_IDLE_S`` is pinged, and one found dead is replaced unseen."""
    url = request.getfixturevalue(FIXTURES[engine])
    with open_adapter(url, limits=FAST) as adapter:
        adapter.create_table("pinged", DEFAULT_COLUMNS)
        dialect = adapter._sa.dialect
        pings: list[object] = []
        ping = dialect.do_ping

        def counted(dbapi_conn: object) -> bool:
            pings.append(dbapi_conn)
            return bool(ping(dbapi_conn))

        monkeypatch.setattr(dialect, "do_ping", counted)
        assert adapter.inspect_table("pinged") is not None
        adapter.drop_column("pinged", "name")
        assert pings == []
        monkeypatch.setattr(engines, "PING_AFTER_IDLE_S", 0.05)
        time.sleep(0.1)
        _end_sessions(engine, url)
        assert [c.name for c in adapter.inspect_table("pinged").columns] == ["id", "created_at", "updated_at"]
        assert len(pings) == 1


def test_a_postgresql_inspection_runs_outside_a_transaction_block(byodb_pg_url: str) -> None:
    """One catalog query: no BEGIN and COMMIT round trips around it (psycopg sends BEGIN before the
    first statement of a connection that is not in autocommit)."""
    with open_adapter(byodb_pg_url, limits=FAST) as adapter:
        adapter.create_table("looked_at", DEFAULT_COLUMNS)
        autocommit: list[bool] = []

        def seen(conn: sa.Connection, *_args: object) -> None:
            autocommit.append(bool(conn.connection.dbapi_connection.autocommit))  # type: ignore[union-attr]

        sa.event.listen(adapter._sa, "before_cursor_execute", seen)
        live = adapter.inspect_table("looked_at")
        assert live is not None and [c.name for c in live.columns] == [c.name for c in DEFAULT_COLUMNS]
        assert autocommit == [True]
        adapter.drop_column("looked_at", "name")  # a DDL step keeps its transaction
        assert autocommit[1:] and not any(autocommit[1:])


@pytest.mark.mariadb
@pytest.mark.parametrize("drivername", ["mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"])
def test_pymysql_is_the_mysql_driver(byodb_mysql_url: str, drivername: str) -> None:
    """Whatever the URL names, MySQL/MariaDB are reached through PyMySQL: the classification relies on
    its exceptions' (errno, message) arguments, as a real server error shows."""
    spelled = make_url(byodb_mysql_url).set(drivername=drivername).render_as_string(hide_password=False)
    with open_adapter(spelled, limits=FAST) as adapter:
        assert adapter.engine == "mysql"
        assert adapter._sa.dialect.driver == "pymysql"
        with adapter._sa.connect() as conn, pytest.raises(sa.exc.DBAPIError) as info:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
    orig = info.value.orig
    assert isinstance(orig, pymysql.err.ProgrammingError)
    assert orig.args[0] == 1146 and "no_such_table" in str(orig.args[1])
    classified = classify(info.value, context="probe")
    assert isinstance(classified, PermanentByodbError)
    assert (classified.engine, classified.code) == ("mysql", "1146")
    assert classified.message.startswith("probe: mysql error (permanent) [1146]: Table ")


def test_postgresql_schema_named_with_capitals_is_inspected_where_the_ddl_goes(byodb_pg_url: str) -> None:
    """current_schema() gives the name as it is; read as an identifier it would be folded to lower
    case and name another schema (or none)."""
    conninfo = byodb_pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        dbname = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute('CREATE SCHEMA "Sales"')
        conn.execute("CREATE SCHEMA sales")
        conn.execute("CREATE TABLE sales.orders (id bigint PRIMARY KEY)")  # a decoy of the same name
        conn.execute(f'ALTER DATABASE "{dbname}" SET search_path TO "Sales"')
    with open_adapter(byodb_pg_url, limits=FAST) as adapter:
        assert adapter.list_tables() == []
        assert adapter.inspect_table("orders") is None
        assert adapter.create_table("orders", DEFAULT_COLUMNS) is True
        assert shape(adapter, "orders")[0] == ("id", ColumnType.INTEGER, False, True)
        assert adapter.list_tables() == ["orders"]
        assert adapter.create_table("orders", DEFAULT_COLUMNS) is False
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'Sales'"
        ).fetchone()
        assert row is not None and row[0] == 1


TWIN_ENGINES = [
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mariadb),  # lower_case_table_names=0 here
]


@pytest.mark.parametrize("engine", TWIN_ENGINES)
def test_a_rerun_drop_never_reaches_a_twin_that_differs_in_case(
    engine: str, request: pytest.FixtureRequest
) -> None:
    """Where the engine tells "users" from "Users", dropping "users" twice (at-least-once delivery)
    must leave "Users", made by someone else, with its data."""
    url: str = request.getfixturevalue(FIXTURES[engine])
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    q = admin.dialect.identifier_preparer.quote_identifier
    with open_adapter(url, limits=FAST) as adapter:
        if engine == "mysql":
            with admin.connect() as conn:
                folds = conn.execute(sa.text("SELECT @@lower_case_table_names")).scalar_one()
            if int(folds) != 0:
                pytest.skip("this server folds table names to one case")
        assert adapter.create_table("users", DEFAULT_COLUMNS) is True
        assert adapter.add_column("users", Column("age", ColumnType.INTEGER)) is True
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE TABLE {q('Users')} (id integer PRIMARY KEY, note text)"))
            conn.execute(sa.text(f"INSERT INTO {q('Users')} VALUES (1, 'keep me')"))
            if engine == "postgresql":  # MySQL column names are one name whatever their case
                conn.execute(sa.text(f"ALTER TABLE users ADD COLUMN {q('Age')} integer"))

        assert adapter.drop_column("users", "age") is True
        assert adapter.drop_column("users", "age") is False
        if engine == "postgresql":
            live = adapter.inspect_table("users")
            assert live is not None and "Age" in [c.name for c in live.columns]
        assert adapter.drop_table("users") is True
        assert adapter.drop_table("users") is False
        with admin.connect() as conn:
            kept = conn.execute(sa.text(f"SELECT note FROM {q('Users')}")).scalar_one()
        assert kept == "keep me"
    admin.dispose()


def test_postgresql_create_racing_another_create_is_transient(byodb_pg_url: str) -> None:
    """Two runs of one creation at once (a job retried while its first run is alive): the loser's
    CREATE waits for the winner's row type and fails on its unique index (23505). The retry finds the
    table there: it must be retried, not reject the change while the table exists."""
    conninfo = byodb_pg_url.replace("postgresql+psycopg://", "postgresql://")
    winner = psycopg.connect(conninfo)
    with open_adapter(byodb_pg_url, limits=DdlLimits(lock_timeout_ms=5000, statement_timeout_ms=10_000)) as a:
        winner.execute('CREATE TABLE "raced" (id integer PRIMARY KEY)')  # not committed yet
        timer = threading.Timer(0.5, winner.commit)
        timer.start()
        try:
            with pytest.raises(TransientByodbError, match="23505"):
                a.create_table("raced", DEFAULT_COLUMNS)
        finally:
            timer.join()
            winner.close()


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("CREATE SEQUENCE people", "sequence"),
        ("CREATE TABLE other (id integer); CREATE INDEX people ON other (id)", "index"),
        ("CREATE TYPE people AS (a integer)", "composite type"),
    ],
)
def test_postgresql_relation_of_that_name_that_is_not_a_table_is_permanent(
    byodb_pg_url: str, statement: str, kind: str
) -> None:
    conninfo = byodb_pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(statement)
    with open_adapter(byodb_pg_url, limits=FAST) as adapter:
        with pytest.raises(PermanentByodbError, match=f"is a {kind}"):
            adapter.create_table("people", DEFAULT_COLUMNS)


def test_postgresql_connections_detect_a_vanished_server(byodb_pg_url: str) -> None:
    """libpq has no read timeout: a server gone behind a network partition is only noticed through
    TCP keepalives, which must be on with short delays (the system's default is about two hours)."""
    from schemasaga.byodb.engines import PG_KEEPALIVES

    with open_adapter(byodb_pg_url, limits=FAST) as adapter:
        with adapter._sa.connect() as conn:  # the pool's own connections
            pgconn = conn.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
            options = {o.keyword.decode(): o.val.decode() if o.val else None for o in pgconn.info}
    assert {k: options[k] for k in PG_KEEPALIVES} == {k: str(v) for k, v in PG_KEEPALIVES.items()}


# -- defaults, unique columns and indexes -------------------------------------------------------------

HOSTILE = "it's \"quoted\" \\ back\\slash '; DROP TABLE x; -- ünï ✓ 100% :name\n\tend"
UUID_DEFAULT = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def _with_default(name: str, kind: ColumnType, value: object, **kw: bool) -> Column:
    return Column(name, kind, default=canonical_default(kind, value), **kw)


EVERY_DEFAULT = (
    Column("id", ColumnType.INTEGER, nullable=False, primary_key=True),
    _with_default("n_int", ColumnType.INTEGER, -5),
    _with_default("n_big", ColumnType.BIGINT, 2**40, unique=True),
    _with_default("t_text", ColumnType.TEXT, HOSTILE),
    _with_default("s_str", ColumnType.STRING, HOSTILE, unique=True),
    _with_default("b_true", ColumnType.BOOLEAN, True, nullable=False),
    _with_default("b_false", ColumnType.BOOLEAN, False),
    _with_default("f_big", ColumnType.FLOAT, 1.5e20),
    _with_default("f_small", ColumnType.FLOAT, 0.1),
    _with_default("num", ColumnType.DECIMAL, "-1234.50"),
    _with_default("day", ColumnType.DATE, "2024-02-29"),
    _with_default("ts", ColumnType.TIMESTAMP, "2024-01-01T10:00:00.5"),
    _with_default("dt", ColumnType.DATETIME, "2024-01-01T02:00:00+02:00"),
    _with_default("doc", ColumnType.JSON, {"a": [1, HOSTILE], "b": None, "c": 1.5}),
    _with_default("doc_text", ColumnType.JSON, "x"),
    _with_default("u", ColumnType.UUID, UUID_DEFAULT.upper(), unique=True),
    _with_default("zero", ColumnType.INTEGER, 0),
    _with_default("blank", ColumnType.STRING, ""),
)
# In name order: the order a tracked table lists its indexes in.
EVERY_INDEX = (Index("ix_pair", ("s_str", "n_int")), Index("uq_pair", ("n_int", "day"), unique=True))


def _inspector_view(url: str, table: str) -> tuple[dict[str, object], set[tuple[str, tuple[str, ...], bool]]]:
    """SQLAlchemy's own reading of the table: each column's default text, and the indexes."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        defaults = {str(c["name"]): c.get("default") for c in inspector.get_columns(table)}
        indexes = {
            (str(i["name"]), tuple(map(str, i["column_names"])), bool(i["unique"]))
            for i in inspector.get_indexes(table)
        }
        indexes |= {
            (str(u["name"]), tuple(map(str, u["column_names"])), True)
            for u in inspector.get_unique_constraints(table)
        }
        return defaults, indexes
    finally:
        engine.dispose()


def test_a_table_with_defaults_unique_columns_and_indexes_round_trips(
    adapter: ByodbAdapter, url: str
) -> None:
    schema = TableSchema("every", EVERY_DEFAULT, EVERY_INDEX)

    assert adapter.create_table("every", EVERY_DEFAULT, EVERY_INDEX) is True

    live = adapter.inspect_table("every")
    assert live is not None
    assert diff(schema, live) == []
    assert live.to_schema() == schema
    assert [c.default for c in live.columns] == [c.default for c in EVERY_DEFAULT]
    assert adapter.create_table("every", EVERY_DEFAULT, EVERY_INDEX) is False
    # Index names are per schema (PostgreSQL) or per database (SQLite): another table's are others.
    assert adapter.create_table("every_again", EVERY_DEFAULT) is True

    # An independent reader sees every default and index.
    defaults, indexes = _inspector_view(url, "every")
    expected = {c.name for c in EVERY_DEFAULT if c.default is not None}
    if adapter.engine == "mysql":
        # SQLAlchemy's MySQL reflection parses SHOW CREATE TABLE and loses a default with a backslash
        # in it (MariaDB escapes it there): the insert below reads those back from the server.
        expected -= {"t_text", "s_str", "doc"}
    else:
        assert "DROP TABLE x" in str(defaults["t_text"])
    assert {n for n, d in defaults.items() if d is not None} >= expected
    uniques = {(index_name("every", (c.name,), True), (c.name,), True) for c in EVERY_DEFAULT if c.unique}
    assert {(i.name, i.columns, i.unique) for i in EVERY_INDEX} | uniques <= indexes

    # The server fills the defaults in, hostile text intact; the unique columns refuse a second row of them.
    rows = _rows(
        url, ["INSERT INTO every (id) VALUES (1)"], "SELECT t_text, s_str, n_int, n_big, doc, u FROM every"
    )
    text_value, string_value, n_int, n_big, doc, u = rows[0]
    assert (text_value, string_value, n_int, n_big) == (HOSTILE, HOSTILE, -5, 2**40)
    assert (json.loads(doc) if isinstance(doc, str) else doc) == {"a": [1, HOSTILE], "b": None, "c": 1.5}
    assert str(u).lower() == UUID_DEFAULT
    with pytest.raises(sa.exc.IntegrityError):
        _rows(url, ["INSERT INTO every (id) VALUES (2)"], "SELECT 1")


def test_create_over_a_table_of_other_defaults_or_indexes_is_permanent(adapter: ByodbAdapter) -> None:
    adapter.create_table("every", EVERY_DEFAULT, EVERY_INDEX)
    before = adapter.inspect_table("every")

    with pytest.raises(PermanentByodbError, match=r"another shape: it has another index 'ix_pair'"):
        adapter.create_table("every", EVERY_DEFAULT, (EVERY_INDEX[1],))
    with pytest.raises(
        PermanentByodbError, match=r"another shape: index 'ix_day', an index on \(day\), is missing"
    ):
        adapter.create_table("every", EVERY_DEFAULT, (*EVERY_INDEX, Index("ix_day", ("day",))))
    other_default = tuple(replace(c, default=-6) if c.name == "n_int" else c for c in EVERY_DEFAULT)
    with pytest.raises(PermanentByodbError, match="column 'n_int' has default -5 instead of -6"):
        adapter.create_table("every", other_default, EVERY_INDEX)
    not_unique = tuple(replace(c, unique=False) if c.name == "u" else c for c in EVERY_DEFAULT)
    with pytest.raises(PermanentByodbError, match="column 'u' is unique"):
        adapter.create_table("every", not_unique, EVERY_INDEX)

    assert adapter.inspect_table("every") == before


def test_add_a_column_with_a_default_and_uniqueness(adapter: ByodbAdapter, url: str) -> None:
    adapter.create_table("people", DEFAULT_COLUMNS)
    _rows(url, ["INSERT INTO people (id) VALUES (1)"], "SELECT 1")
    code = Column("code", ColumnType.STRING, nullable=False, default=HOSTILE, unique=True)

    assert adapter.add_column("people", code) is True
    assert adapter.add_column("people", code) is False
    with pytest.raises(PermanentByodbError, match="already exists, but column 'code' has default"):
        adapter.add_column("people", replace(code, default="other"))
    with pytest.raises(PermanentByodbError, match="already exists, but column 'code' is unique"):
        adapter.add_column("people", replace(code, unique=False))

    live = adapter.inspect_table("people")
    assert live is not None
    assert diff(TableSchema("people", (*DEFAULT_COLUMNS, code)), live) == []
    _, indexes = _inspector_view(url, "people")
    assert (index_name("people", ("code",), True), ("code",), True) in indexes
    assert _rows(url, [], "SELECT code FROM people") == [(HOSTILE,)]


HAND_MADE = {
    "postgresql": [
        "CREATE TABLE hand (id serial PRIMARY KEY, at timestamptz DEFAULT now(), n int DEFAULT 5,"
        " email varchar(255) CONSTRAINT hand_email UNIQUE, a int, b int, CONSTRAINT hand_ab UNIQUE (a, b))",
        "CREATE INDEX hand_lower ON hand (lower(email))",
        "CREATE UNIQUE INDEX hand_partial ON hand (n) WHERE n > 0",
    ],
    "mysql": [
        "CREATE TABLE hand (id int PRIMARY KEY, at timestamp(6) NULL DEFAULT CURRENT_TIMESTAMP(6),"
        " n int DEFAULT 5, email varchar(255), a int, b int,"
        " UNIQUE KEY hand_email (email), UNIQUE KEY hand_ab (a, b), KEY hand_lower (email(10)))",
    ],
    "sqlite": [
        "CREATE TABLE hand (id integer PRIMARY KEY, at timestamp DEFAULT CURRENT_TIMESTAMP, n int DEFAULT 5,"
        " email varchar(255) UNIQUE, a int, b int, UNIQUE (a, b))",
        "CREATE INDEX hand_lower ON hand (lower(email))",
        "CREATE UNIQUE INDEX hand_partial ON hand (n) WHERE n > 0",
    ],
}


def test_a_table_made_by_hand_reads_as_it_is(adapter: ByodbAdapter, url: str) -> None:
    _rows(url, HAND_MADE[adapter.engine], "SELECT 1")

    live = adapter.inspect_table("hand")

    assert live is not None
    assert isinstance(live.column("at").default, Expression)  # type: ignore[union-attr]
    assert live.column("n").default == 5  # type: ignore[union-attr]
    assert live.column("email").unique and not live.column("a").unique  # type: ignore[union-attr]
    if adapter.engine == "postgresql":
        assert live.column("id").default == Expression("nextval('hand_id_seq'::regclass)")  # type: ignore[union-attr]
    composite = next(i for i in live.indexes if i.columns == ("a", "b"))
    assert composite.unique and composite.valid
    # An index on an expression (a prefix on MySQL) is no index on the column.
    assert not any(i.columns == ("email",) and not i.unique for i in live.indexes)
    if adapter.engine != "mysql":
        # a partial unique index makes no column unique
        partial = live.index("hand_partial")
        assert partial is not None and partial.columns[0] == "n" and partial.columns[-1].startswith("WHERE")
        assert not live.column("n").unique  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="expression"):
        live.to_schema()


def test_postgresql_reports_an_invalid_index(byodb_pg_url: str) -> None:
    with open_adapter(byodb_pg_url, limits=FAST) as adapter:
        adapter.create_table("people", (*DEFAULT_COLUMNS, Column("email", ColumnType.STRING)))
        _rows(byodb_pg_url, ["INSERT INTO people (id, email) VALUES (1, 'a'), (2, 'a')"], "SELECT 1")
        conninfo = make_url(byodb_pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with (
            psycopg.connect(conninfo, autocommit=True) as conn,
            pytest.raises(psycopg.errors.UniqueViolation),
        ):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY uq_email ON people (email)")

        live = adapter.inspect_table("people")

        assert live is not None
        assert live.indexes == (LiveIndex("uq_email", ("email",), unique=True, valid=False),)
        assert live.column("email").unique is False  # type: ignore[union-attr]
        schema = live.to_schema()
        assert schema.indexes == ()
        assert [d.kind for d in diff(schema, live)] == [DifferenceKind.EXTRA_INDEX]
        with pytest.raises(
            PermanentByodbError, match=r"another index 'uq_email', a unique index on \(email\) \(invalid\)"
        ):
            adapter.create_table("people", schema.columns)  # another shape than the one asked for


def test_the_plan_of_a_create_and_an_add_is_what_runs(adapter: ByodbAdapter, url: str) -> None:
    schema = TableSchema("every", EVERY_DEFAULT, EVERY_INDEX)
    code = Column("code", ColumnType.STRING, default=HOSTILE, unique=True)
    after = TableSchema("every", (*EVERY_DEFAULT, code), EVERY_INDEX)
    planned = [s.sql for s in adapter.plan_change(None, schema, CreateTableChange(schema=schema)).statements]
    planned += [s.sql for s in adapter.plan_change(schema, after, AddColumn(column=code)).statements]
    ran: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith(("CREATE", "ALTER")):
            ran.append(statement)

    sa.event.listen(adapter._sa, "before_cursor_execute", record)
    assert adapter.create_table("every", EVERY_DEFAULT, EVERY_INDEX) is True
    assert adapter.add_column("every", code) is True

    doubled = adapter.engine != "sqlite"  # psycopg and pymysql take "%%" for "%"
    assert ran == [s.replace("%", "%%") if doubled else s for s in planned]
    assert any("DROP TABLE x" in s for s in planned) and "%%" not in "".join(planned)
    live = adapter.inspect_table("every")
    assert live is not None and diff(after, live) == []
