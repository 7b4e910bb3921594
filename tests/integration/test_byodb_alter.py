"""Planned changes on real PostgreSQL, MariaDB and SQLite: the planner writes the statements, the
adapter's apply_plan runs exactly them, and SQLAlchemy's inspector (an independent reader) checks the
result; the rows survive every change, and rows a change cannot keep refuse it before any DDL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from schemasaga.byodb import ByodbAdapter, DdlLimits, PermanentByodbError, TransientByodbError, open_adapter
from schemasaga.byodb.planner import TYPE_CHANGES, Conversion, plan, unique_index_name
from schemasaga.domain.changes import AddIndex, AlterColumn, Change, DropIndex, RenameTable
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType, Index, TableSchema

T = ColumnType
ENGINES = [
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mariadb),
    pytest.param("sqlite", id="sqlite"),
]
FIXTURES = {"postgresql": "byodb_pg_url", "mysql": "byodb_mysql_url", "sqlite": "byodb_sqlite_url"}
FAST = DdlLimits(lock_timeout_ms=2000, statement_timeout_ms=20_000, connect_timeout_s=2)
DDL_WORDS = ("CREATE", "ALTER", "DROP", "INSERT", "PRAGMA LEGACY_ALTER_TABLE")


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(FIXTURES[request.param])
    return value


@pytest.fixture
def adapter(url: str) -> Iterator[ByodbAdapter]:
    a = open_adapter(url, limits=FAST)
    try:
        yield a
    finally:
        a.dispose()


@pytest.fixture
def reader(url: str) -> Iterator[sa.Engine]:
    """An engine of our own on the same database: the independent reader and writer of rows."""
    engine = sa.create_engine(url.replace("mariadb+", "mysql+"))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def executed(adapter: ByodbAdapter) -> Iterator[list[str]]:
    """The DDL (and SQLite's copy) the adapter sends, in order: proof that it runs the plan and only it."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(DDL_WORDS):
            sent.append(statement)

    sa.event.listen(adapter._sa, "before_cursor_execute", record)
    yield sent
    sa.event.remove(adapter._sa, "before_cursor_execute", record)


PEOPLE = TableSchema(
    "people", (*DEFAULT_COLUMNS, Column("age", T.TEXT), Column("nick", T.STRING), Column("n", T.BIGINT))
)
ROWS = [
    {"id": 1, "name": "ann", "age": "31", "nick": "a", "n": 10},
    {"id": 2, "name": "bob", "age": "42", "nick": "b", "n": 20},
    {"id": 3, "name": None, "age": None, "nick": "c", "n": 30},
]


def make_people(adapter: ByodbAdapter, reader: sa.Engine, rows: list[dict[str, Any]] = ROWS) -> TableSchema:
    adapter.create_table(PEOPLE.name, PEOPLE.columns)
    table = sa.table(PEOPLE.name, *(sa.column(c.name) for c in PEOPLE.columns))
    with reader.begin() as conn:
        conn.execute(sa.insert(table), rows)
    return PEOPLE


def run(adapter: ByodbAdapter, executed: list[str], before: TableSchema, change: Change) -> TableSchema:
    """Plan ``change`` and apply it; the statements sent are exactly the plan's; a second run is a no-op."""
    after = change.apply(before)
    assert adapter.live_state(before, after, change) == "before"
    planned = plan(adapter.engine, before, after, change, live=adapter.inspect_table(before.name))
    executed.clear()
    assert adapter.apply_plan(before, after, planned, change=change) is True
    assert executed == [s.sql for s in planned.statements]
    executed.clear()
    assert adapter.apply_plan(before, after, planned) is False  # (the change is worked out from the schemas)
    assert executed == []
    assert adapter.live_state(before, after) == "after"
    return after


def rows(reader: sa.Engine, table: str, *columns: str) -> list[tuple[Any, ...]]:
    t = sa.table(table, *(sa.column(c) for c in columns))
    with reader.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c[columns[0]]))]


def columns(reader: sa.Engine, table: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in sa.inspect(reader).get_columns(table)}


def unique_sets(reader: sa.Engine, table: str) -> set[tuple[str, ...]]:
    inspector = sa.inspect(reader)
    found = {tuple(i["column_names"]) for i in inspector.get_indexes(table) if i["unique"]}
    found |= {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
    return found


def test_rename_table_keeps_every_row(adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]) -> None:
    before = make_people(adapter, reader)

    run(adapter, executed, before, RenameTable("folks"))

    tables = sa.inspect(reader).get_table_names()
    assert "folks" in tables and "people" not in tables
    assert rows(reader, "folks", "id", "name") == [(1, "ann"), (2, "bob"), (3, None)]


def test_a_rename_in_letter_case_only_keeps_every_row(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    # SQLite's names are case-insensitive: it refuses `RENAME TO` a name that differs only in case
    # ("there is already another table ... with this name"), so its plan goes through another name.
    before = make_people(adapter, reader)

    run(adapter, executed, before, RenameTable("People"))

    tables = sa.inspect(reader).get_table_names()
    assert "People" in tables and "people" not in tables
    assert rows(reader, "People", "id", "name") == [(1, "ann"), (2, "bob"), (3, None)]


def test_alter_column_all_at_once_then_back(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    before = make_people(adapter, reader, [r | {"age": r["age"] or "7"} for r in ROWS])

    change = AlterColumn("age", Column("years", T.INTEGER, nullable=False, default=7, unique=True))
    after = run(adapter, executed, before, change)

    found = columns(reader, "people")
    assert "age" not in found
    assert found["years"]["nullable"] is False
    assert isinstance(found["years"]["type"], sa.Integer)
    assert "7" in str(found["years"]["default"])
    assert ("years",) in unique_sets(reader, "people")
    assert rows(reader, "people", "id", "years", "name") == [(1, 31, "ann"), (2, 42, "bob"), (3, 7, None)]

    # widen, drop the default, allow NULL, drop the unique index again
    back = AlterColumn("years", Column("years", T.BIGINT))
    run(adapter, executed, after, back)
    found = columns(reader, "people")
    assert found["years"]["nullable"] is True
    assert found["years"]["default"] is None
    assert isinstance(found["years"]["type"], sa.BigInteger)
    assert ("years",) not in unique_sets(reader, "people")
    assert rows(reader, "people", "id", "years") == [(1, 31), (2, 42), (3, 7)]


def test_rename_column_and_unique_alone(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    before = make_people(adapter, reader)

    renamed = run(adapter, executed, before, AlterColumn("nick", Column("alias", T.STRING)))
    unique = run(adapter, executed, renamed, AlterColumn("alias", Column("alias", T.STRING, unique=True)))

    assert ("alias",) in unique_sets(reader, "people")
    assert rows(reader, "people", "id", "alias") == [(1, "a"), (2, "b"), (3, "c")]
    # a table rename later: dropping the unique finds the live index by its columns, not by a new name
    moved = run(adapter, executed, unique, RenameTable("folks"))
    run(adapter, executed, moved, AlterColumn("alias", Column("alias", T.STRING)))
    assert ("alias",) not in unique_sets(reader, "folks")


def test_default_set_changed_and_dropped(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    before = make_people(adapter, reader)
    hostile = 'it\'s 50% \\ :x "q" `b`'

    with_default = run(
        adapter, executed, before, AlterColumn("nick", Column("nick", T.STRING, default=hostile))
    )
    table = sa.table("people", sa.column("id"))
    with reader.begin() as conn:
        conn.execute(sa.insert(table), [{"id": 4}])
    assert rows(reader, "people", "id", "nick")[-1] == (4, hostile)

    changed = run(adapter, executed, with_default, AlterColumn("nick", Column("nick", T.STRING, default="x")))
    run(adapter, executed, changed, AlterColumn("nick", Column("nick", T.STRING)))
    assert columns(reader, "people")["nick"]["default"] is None
    assert len(rows(reader, "people", "id")) == 4


def test_add_and_drop_index(adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]) -> None:
    before = make_people(adapter, reader)

    indexed = run(adapter, executed, before, AddIndex(Index("ix_people_nick_n", ("nick", "n"), unique=True)))
    found = {i["name"]: i for i in sa.inspect(reader).get_indexes("people")}
    assert found["ix_people_nick_n"]["column_names"] == ["nick", "n"]
    assert found["ix_people_nick_n"]["unique"]

    run(adapter, executed, indexed, DropIndex(Index("ix_people_nick_n", ("nick", "n"), unique=True)))
    assert "ix_people_nick_n" not in {i["name"] for i in sa.inspect(reader).get_indexes("people")}


def test_a_type_change_keeps_indexes_and_rows(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    before = make_people(adapter, reader)
    indexed = run(adapter, executed, before, AddIndex(Index("ix_people_n", ("n",))))
    unique = run(adapter, executed, indexed, AlterColumn("nick", Column("nick", T.STRING, unique=True)))

    run(adapter, executed, unique, AlterColumn("age", Column("age", T.INTEGER)))

    assert {i["name"] for i in sa.inspect(reader).get_indexes("people")} >= {
        "ix_people_n",
        unique_index_name("people", "nick"),
    }
    assert rows(reader, "people", "id", "age", "nick") == [(1, 31, "a"), (2, 42, "b"), (3, None, "c")]


@pytest.mark.parametrize(
    ("change", "message", "keys"),
    [
        (AlterColumn("age", Column("age", T.INTEGER)), "1 row with a value of 'age' that is no integer", [2]),
        (AlterColumn("name", Column("name", T.TEXT, nullable=False)), "2 rows with NULL in 'name'", [3, 4]),
        (
            AlterColumn("nick", Column("nick", T.STRING, unique=True)),
            "2 rows sharing a value of 'nick'",
            [1, 2],
        ),
        (AddIndex(Index("ux", ("nick", "n"), unique=True)), "2 rows sharing values", [1, 2]),
        (AlterColumn("n", Column("n", T.INTEGER)), "1 row with a value of 'n' that is no integer", [4]),
    ],
    ids=["type", "not-null", "unique", "unique-index", "narrowing"],
)
def test_rows_that_do_not_fit_refuse_the_change_before_any_ddl(
    adapter: ByodbAdapter,
    reader: sa.Engine,
    executed: list[str],
    change: Change,
    message: str,
    keys: list[int],
) -> None:
    before = make_people(
        adapter,
        reader,
        [
            {"id": 1, "name": "a", "age": "1", "nick": "same", "n": 1},
            {"id": 2, "name": "b", "age": "x1", "nick": "same", "n": 1},
            {"id": 3, "name": None, "age": None, "nick": "c", "n": 2},
            {"id": 4, "name": None, "age": "3", "nick": "d", "n": 2**40},
        ],
    )
    after = change.apply(before)
    planned = plan(adapter.engine, before, after, change)

    found = adapter.check_rows(before, after, change)
    assert found is not None and found.message.startswith(message)
    assert list(found.primary_keys) == keys

    executed.clear()
    with pytest.raises(PermanentByodbError, match=message):
        adapter.apply_plan(before, after, planned, change=change)
    assert executed == []


def test_a_table_of_another_shape_is_refused(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    before = make_people(adapter, reader)
    elsewhere = TableSchema(before.name, (*before.columns, Column("extra", T.INTEGER)))
    change = AlterColumn("age", Column("age", T.STRING))
    after = change.apply(elsewhere)
    executed.clear()

    assert adapter.live_state(elsewhere, after, change) == "neither"
    with pytest.raises(PermanentByodbError, match=r"neither as before nor as after.*extra"):
        adapter.apply_plan(elsewhere, after, plan(adapter.engine, elsewhere, after, change), change=change)
    assert executed == []


# (source type, target type, values that convert, a value that does not)
CONVERSIONS = [
    (T.TEXT, T.INTEGER, ["1", "-2147483648", "2147483647"], "2147483648"),
    (T.TEXT, T.BIGINT, ["9223372036854775807", "-5"], "1.5"),
    (T.TEXT, T.FLOAT, ["1.5", "-2", "1e10"], "1e400"),
    (T.STRING, T.FLOAT, ["2.5"], "abc"),
    (T.TEXT, T.DECIMAL, ["1.5", "-20.0000000001"], "1.00000000001"),
    (T.TEXT, T.BOOLEAN, ["1", "0"], "maybe"),
    (T.TEXT, T.DATE, ["2024-02-29", "1999-12-31"], "2023-02-29"),
    (T.TEXT, T.TIMESTAMP, ["2024-02-29 23:59:59", "2024-01-01 00:00:00.123456"], "2024-01-01 24:00:00"),
    (T.TEXT, T.UUID, ["0b7e6f7c-2f5e-4b8a-9a57-3d3f7e3f0a11"], "0b7e6f7c-2f5e-4b8a-9a57-3d3f7e3f0a1"),
    (T.TEXT, T.JSON, ['{"a": [1, 2]}', "3", '"s"'], "{a: 1}"),
    (T.TEXT, T.STRING, ["x" * 255], "y" * 256),
    (T.STRING, T.INTEGER, ["12"], "12x"),
    (T.BIGINT, T.INTEGER, [2**31 - 1, -(2**31)], 2**31),
    (T.DECIMAL, T.BIGINT, ["12", "-3.0000000000"], "1.5"),
    (T.FLOAT, T.DECIMAL, [1.5, -2.25], 1e30),
    (T.JSON, T.STRING, ['{"a": 1}'], json.dumps(["x" * 300])),
]


@pytest.mark.parametrize(("source", "target", "good", "bad"), CONVERSIONS, ids=lambda v: str(v)[:12])
def test_conversions_check_their_rows(
    adapter: ByodbAdapter,
    reader: sa.Engine,
    executed: list[str],
    source: ColumnType,
    target: ColumnType,
    good: list[Any],
    bad: Any,
) -> None:
    before = TableSchema("vals", (DEFAULT_COLUMNS[0], Column("v", source)))
    adapter.create_table(before.name, before.columns)
    table = sa.table("vals", sa.column("id"), sa.column("v"))
    with reader.begin() as conn:
        conn.execute(sa.insert(table), [{"id": i, "v": v} for i, v in enumerate([*good, None, bad], start=1)])
    change = AlterColumn("v", Column("v", target))
    after = change.apply(before)

    found = adapter.check_rows(before, after, change)
    assert found is not None and (found.count, found.primary_keys) == (1, (len(good) + 2,))

    with reader.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.id == len(good) + 2))
    assert adapter.check_rows(before, after, change) is None
    run(adapter, executed, before, change)
    assert len(rows(reader, "vals", "id", "v")) == len(good) + 1


def test_postgresql_drops_an_invalid_index_left_by_a_failed_build(
    byodb_pg_url: str, empty_pg_db: str
) -> None:
    adapter = open_adapter(byodb_pg_url, limits=FAST)
    reader = sa.create_engine(byodb_pg_url)
    try:
        before = make_people(adapter, reader, [r | {"nick": "same"} for r in ROWS])
        name = unique_index_name("people", "nick")
        # what a CONCURRENTLY build that failed half-way leaves: an invalid index
        with psycopg.connect(empty_pg_db, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" ON people (nick)')
            conn.execute("UPDATE people SET nick = id::text")
            invalid = conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()
            assert invalid == (1,)

        change = AlterColumn("nick", Column("nick", T.STRING, unique=True))
        after = change.apply(before)
        assert adapter.apply_plan(before, after, plan("postgresql", before, after, change), change=change)

        with psycopg.connect(empty_pg_db) as conn:
            assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone() == (0,)
        assert ("nick",) in unique_sets(reader, "people")
    finally:
        adapter.dispose()
        reader.dispose()


def test_postgresql_resumes_a_plan_whose_transaction_committed(byodb_pg_url: str) -> None:
    """Killed after the transaction but before the CONCURRENTLY build: the next run builds only the index."""
    adapter = open_adapter(byodb_pg_url, limits=FAST)
    reader = sa.create_engine(byodb_pg_url)
    sent: list[str] = []
    sa.event.listen(
        adapter._sa,
        "before_cursor_execute",
        lambda _c, _k, statement, *_a: sent.append(statement) if statement.startswith(DDL_WORDS) else None,
    )
    try:
        before = make_people(adapter, reader)
        change = AlterColumn("nick", Column("alias", T.STRING, nullable=False, unique=True))
        after = change.apply(before)
        planned = plan("postgresql", before, after, change)
        first = [s.sql for s in planned.statements if s.transactional]
        later = [s.sql for s in planned.statements if not s.transactional]
        assert first and later
        with reader.begin() as conn:
            for sql in first:
                conn.exec_driver_sql(sql)
        sent.clear()
        assert adapter.live_state(before, after, change) == "middle"

        assert adapter.apply_plan(before, after, planned) is True

        assert sent == later
        assert ("alias",) in unique_sets(reader, "people")
        assert adapter.apply_plan(before, after, planned) is False
    finally:
        adapter.dispose()
        reader.dispose()


def test_postgresql_cleans_up_after_a_concurrent_build_that_timed_out(
    byodb_pg_url: str, empty_pg_db: str
) -> None:
    """A CONCURRENTLY build that waits past the lock timeout for a writer leaves an invalid index: the
    failure is transient, and the next attempt drops that index before building it again."""
    adapter = open_adapter(byodb_pg_url, limits=DdlLimits(lock_timeout_ms=300, statement_timeout_ms=20_000))
    reader = sa.create_engine(byodb_pg_url)
    try:
        before = make_people(adapter, reader)
        change = AddIndex(Index("ix_people_n", ("n",)))
        after = change.apply(before)
        planned = plan("postgresql", before, after, change)

        with psycopg.connect(empty_pg_db) as writer:
            writer.execute("UPDATE people SET n = n + 1 WHERE id = 1")  # holds its lock, uncommitted
            with pytest.raises(TransientByodbError, match=r"lock timeout|canceling statement"):
                adapter.apply_plan(before, after, planned, change=change)
            writer.rollback()
        with psycopg.connect(empty_pg_db) as conn:
            left = conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_index x ON x.indexrelid = c.oid "
                "WHERE NOT x.indisvalid"
            ).fetchall()
        # its clean-up waited for the same writer and timed out too: the index is left for the next attempt
        assert left == [("ix_people_n",)]

        assert adapter.apply_plan(before, after, planned, change=change) is True

        with psycopg.connect(empty_pg_db) as conn:
            assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone() == (0,)
        assert "ix_people_n" in {i["name"] for i in sa.inspect(reader).get_indexes("people")}
    finally:
        adapter.dispose()
        reader.dispose()


DEFAULTS = [
    (T.INTEGER, -5),
    (T.BIGINT, 2**40),
    (T.TEXT, "it's a \\ 50% :x"),
    (T.STRING, "abc"),
    (T.BOOLEAN, True),
    (T.FLOAT, 1.5),
    (T.DECIMAL, "12.25"),
    (T.DATE, "2024-02-29"),
    (T.TIMESTAMP, "2024-02-29 12:30:00"),
    (T.DATETIME, "2024-02-29 12:30:00+00:00"),
    (T.JSON, {"a": [1, "b"]}),
    (T.UUID, "0b7e6f7c-2f5e-4b8a-9a57-3d3f7e3f0a11"),
]


@pytest.mark.parametrize(("kind", "value"), DEFAULTS, ids=[k.value for k, _ in DEFAULTS])
def test_a_default_of_every_type(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str], kind: ColumnType, value: object
) -> None:
    """Set and drop a default of each type; each second run recognises the change as done."""
    before = TableSchema("vals", (DEFAULT_COLUMNS[0], Column("v", kind)))
    adapter.create_table(before.name, before.columns)

    with_default = run(adapter, executed, before, AlterColumn("v", Column("v", kind, default=value)))
    with reader.begin() as conn:
        conn.execute(sa.insert(sa.table("vals", sa.column("id"))), [{"id": 1}])
        stored = conn.execute(sa.text("SELECT v FROM vals")).scalar_one()
    assert stored is not None
    if kind in (T.INTEGER, T.BIGINT, T.STRING, T.TEXT):
        assert stored == value

    run(adapter, executed, with_default, AlterColumn("v", Column("v", kind)))
    assert columns(reader, "vals")["v"]["default"] is None


SAMPLES: dict[ColumnType, Any] = {
    T.INTEGER: 7,
    T.BIGINT: 2**40,
    T.TEXT: "abc",
    T.STRING: "abc",
    T.BOOLEAN: True,
    T.FLOAT: 1.5,
    T.DECIMAL: Decimal("12.25"),
    T.DATE: date(2024, 2, 29),
    T.TIMESTAMP: datetime(2024, 2, 29, 12, 30),
    T.DATETIME: datetime(2024, 2, 29, 12, 30, tzinfo=UTC),
    T.JSON: '{"a": [1, "b"]}',
    T.UUID: "0b7e6f7c-2f5e-4b8a-9a57-3d3f7e3f0a11",
}


def test_every_widening_keeps_its_values(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    """Every widening change of the engine's matrix, each on a column of its own with a value in it."""
    pairs = [pair for pair, kind in TYPE_CHANGES[adapter.engine].items() if kind is Conversion.WIDEN]
    schema = TableSchema(
        "wide", (DEFAULT_COLUMNS[0], *(Column(f"c{i}", source) for i, (source, _) in enumerate(pairs)))
    )
    adapter.create_table(schema.name, schema.columns)
    table = sa.table("wide", sa.column("id"), *(sa.column(f"c{i}") for i in range(len(pairs))))
    values = {f"c{i}": SAMPLES[source] for i, (source, _) in enumerate(pairs)}
    if adapter.engine == "sqlite":  # the driver stores no time zones; SQLAlchemy's types would store text
        values = {k: str(v) if isinstance(v, datetime | date | Decimal) else v for k, v in values.items()}
    with reader.begin() as conn:
        conn.execute(sa.insert(table), [{"id": 1, **values}])

    for i, (_, target) in enumerate(pairs):
        schema = run(adapter, executed, schema, AlterColumn(f"c{i}", Column(f"c{i}", target)))

    live = adapter.inspect_table("wide")
    assert live is not None
    assert [(c.name, c.type) for c in live.columns[1:]] == [(f"c{i}", t) for i, (_, t) in enumerate(pairs)]
    with reader.connect() as conn:
        (row,) = conn.execute(sa.select(table)).all()
    assert None not in row


def test_duplicates_are_judged_as_the_values_will_be(adapter: ByodbAdapter, executed: list[str]) -> None:
    """'1.5' and '1.50' differ as text but are one decimal: a unique decimal column cannot take both."""
    before = TableSchema("vals", (DEFAULT_COLUMNS[0], Column("v", T.TEXT)))
    adapter.create_table(before.name, before.columns)
    engine = sa.create_engine(adapter._sa.url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(sa.table("vals", sa.column("id"), sa.column("v"))),
                [{"id": 1, "v": "1.5"}, {"id": 2, "v": "2"}, {"id": 3, "v": "1.50"}],
            )
    finally:
        engine.dispose()
    change = AlterColumn("v", Column("v", T.DECIMAL, unique=True))
    after = change.apply(before)

    found = adapter.check_rows(before, after, change)
    assert found is not None and found.message == "2 rows sharing a value of 'v' (primary keys 1, 3)"
    executed.clear()
    with pytest.raises(PermanentByodbError, match="2 rows sharing"):
        adapter.apply_plan(before, after, plan(adapter.engine, before, after, change), change=change)
    assert executed == []


def test_postgresql_undoes_the_transaction_when_the_concurrent_build_fails(byodb_pg_url: str) -> None:
    """A duplicate written between the check and the CONCURRENTLY build: the build fails for good, and
    the rename and NOT NULL committed before it are undone, so the change is refused as a whole."""
    reader = sa.create_engine(byodb_pg_url)

    def duplicate_first(label: str) -> None:
        if label.startswith("apply_plan:CREATE UNIQUE INDEX CONCURRENTLY"):
            with reader.begin() as conn:
                conn.execute(sa.text("INSERT INTO people (id, alias) VALUES (4, 'a')"))

    adapter = ByodbAdapter(byodb_pg_url, limits=FAST, between_statements=duplicate_first)
    try:
        before = make_people(adapter, reader)
        change = AlterColumn("nick", Column("alias", T.STRING, nullable=False, unique=True))
        after = change.apply(before)

        with pytest.raises(PermanentByodbError, match=r"undone: the table is as before"):
            adapter.apply_plan(before, after, plan("postgresql", before, after, change), change=change)

        found = columns(reader, "people")
        assert "alias" not in found and found["nick"]["nullable"] is True
        assert unique_sets(reader, "people") == set()
        assert rows(reader, "people", "id", "nick") == [(1, "a"), (2, "b"), (3, "c"), (4, "a")]
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar() == 0
    finally:
        adapter.dispose()
        reader.dispose()


def test_a_name_held_by_something_else_is_refused_before_any_ddl(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    before = make_people(adapter, reader)
    adapter.create_table("folks", DEFAULT_COLUMNS)
    rename = RenameTable("folks")
    executed.clear()
    with pytest.raises(PermanentByodbError, match="a table 'folks' exists already"):
        adapter.apply_plan(
            before, rename.apply(before), plan(adapter.engine, before, rename.apply(before), rename)
        )
    assert executed == []

    if adapter.engine != "mysql":  # index names are per table there
        with reader.begin() as conn:
            conn.execute(sa.text(f'CREATE INDEX "{unique_index_name("people", "nick")}" ON folks (name)'))
        unique = AlterColumn("nick", Column("nick", T.STRING, unique=True))
        after = unique.apply(before)
        executed.clear()
        with pytest.raises(PermanentByodbError, match="is taken by an index of 'folks'"):
            adapter.apply_plan(before, after, plan(adapter.engine, before, after, unique))
        assert executed == []


def test_sqlite_rebuild_keeps_views_and_refuses_to_drop_triggers(byodb_sqlite_url: str) -> None:
    adapter = open_adapter(byodb_sqlite_url, limits=FAST)
    reader = sa.create_engine(byodb_sqlite_url)
    try:
        before = make_people(adapter, reader)
        with reader.begin() as conn:
            conn.execute(sa.text("CREATE VIEW adults AS SELECT id, age FROM people"))
        change = AlterColumn("age", Column("age", T.INTEGER))
        after = change.apply(before)
        assert adapter.apply_plan(before, after, plan("sqlite", before, after, change), change=change)
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT age FROM adults ORDER BY id")).scalars().all() == [
                31,
                42,
                None,
            ]
            assert conn.execute(sa.text("PRAGMA legacy_alter_table")).scalar() == 0

        with reader.begin() as conn:
            conn.execute(sa.text("CREATE TRIGGER stamp AFTER INSERT ON people BEGIN SELECT 1; END"))
        back = AlterColumn("age", Column("age", T.TEXT))
        with pytest.raises(PermanentByodbError, match="would drop its trigger"):
            adapter.apply_plan(after, back.apply(after), plan("sqlite", after, back.apply(after), back))
        assert columns(reader, "people")["age"]["type"].__class__ is sa.INTEGER
    finally:
        adapter.dispose()
        reader.dispose()


def test_a_type_change_with_a_default_on_both_sides(
    adapter: ByodbAdapter, reader: sa.Engine, executed: list[str]
) -> None:
    """PostgreSQL cannot cast a text default to integer: the old default goes first, the new one after."""
    before = make_people(adapter, reader)
    with_default = run(adapter, executed, before, AlterColumn("age", Column("age", T.TEXT, default="x")))

    run(adapter, executed, with_default, AlterColumn("age", Column("age", T.INTEGER, default=1)))

    with reader.begin() as conn:
        conn.execute(sa.insert(sa.table("people", sa.column("id"))), [{"id": 9}])
    assert rows(reader, "people", "id", "age") == [(1, 31), (2, 42), (3, None), (9, 1)]


def _big(url: str, rows: int) -> TableSchema:
    """A table ``big`` (id, n integer) of ``rows`` rows, made by the server itself."""
    schema = TableSchema("big", (DEFAULT_COLUMNS[0], Column("n", T.INTEGER)))
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE big (id integer PRIMARY KEY, n integer)"))
            conn.execute(sa.text(f"INSERT INTO big SELECT i, i FROM generate_series(1, {rows}) AS i"))
    finally:
        engine.dispose()
    return schema


def test_a_rewrite_past_the_statement_timeout_is_final_and_changes_nothing(byodb_pg_url: str) -> None:
    # Each retry of a rewrite cut off by the statement timeout would block writers as long again.
    before = _big(byodb_pg_url, 300_000)
    adapter = open_adapter(byodb_pg_url, limits=DdlLimits(lock_timeout_ms=2000, statement_timeout_ms=20))
    try:
        change = AlterColumn("n", Column("n", T.BIGINT))
        after = change.apply(before)
        planned = plan("postgresql", before, after, change)
        assert any(s.rewrites for s in planned.statements)
        with pytest.raises(PermanentByodbError, match=r"statement timeout.*not retried") as raised:
            adapter.apply_plan(before, after, planned, change=change)
        assert raised.value.statement_timeout
        assert adapter.live_state(before, after, change) == "before"
    finally:
        adapter.dispose()


def test_a_concurrent_index_build_is_not_cut_off_at_the_step_timeout(byodb_pg_url: str) -> None:
    # It blocks no writer: the step's short statement timeout does not apply, the online one does.
    before = _big(byodb_pg_url, 300_000)
    change = AddIndex(Index("big_n_idx", ("n",)))
    after = change.apply(before)
    planned = plan("postgresql", before, after, change)
    assert [s.transactional for s in planned.statements] == [False]
    cut_off = open_adapter(
        byodb_pg_url,
        limits=DdlLimits(lock_timeout_ms=2000, statement_timeout_ms=20, online_statement_timeout_ms=20),
    )
    try:
        with pytest.raises(TransientByodbError) as raised:
            cut_off.apply_plan(before, after, planned, change=change)
        assert raised.value.statement_timeout
    finally:
        cut_off.dispose()
    adapter = open_adapter(byodb_pg_url, limits=DdlLimits(lock_timeout_ms=2000, statement_timeout_ms=20))
    try:
        assert adapter.apply_plan(before, after, planned, change=change) is True
        assert adapter.live_state(before, after, change) == "after"
    finally:
        adapter.dispose()
