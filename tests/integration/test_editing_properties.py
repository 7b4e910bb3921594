"""Random sequences of table edits (issue 8), run through the real service on each engine.

Hypothesis draws, for a fresh table, a sequence of changes: columns added with their properties, columns
renamed, retyped (mostly along the README's matrix, ``planner.TYPE_CHANGES``, sometimes off it), made
nullable or not, unique or not, given or stripped of a default, dropped; indexes added and dropped; the
table renamed; rows inserted behind the service's back (so that the row checks have something to
refuse). After each change settles:

- what ``GET /v1/tables/{id}`` shows equals the live schema as SQLAlchemy's inspector reads it (an
  independent reader: names and order, types by the README's type table, nullability, primary key,
  which columns have a default and which are unique, and the indexes);
- ``verify`` (the service function behind ``schemasaga verify``) finds no divergence;
- an accepted change completed, and left what it asked for; a refused one (4xx) wrote nothing: no
  event, no job, the table's version unchanged.

The default budget is small (``SCHEMASAGA_PROPERTY_EXAMPLES``, default 2 examples of up to
``SCHEMASAGA_PROPERTY_STEPS``, default 8, changes per engine); ``make property-long`` runs a large one.
Examples are derandomized (the same sequence every run), share the test's fresh database and each
works on a table of its own, deleted at its end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from schemasaga.bootstrap import Container
from schemasaga.byodb.planner import TYPE_CHANGES
from schemasaga.config import Settings
from schemasaga.domain.columns import ColumnType
from schemasaga.services.verify import verify
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation, wait_synced
from tests.integration.live_schema import assert_shown_is_live, read_live
from tests.integration.test_saga_flow import counts

EXAMPLES = int(os.environ.get("SCHEMASAGA_PROPERTY_EXAMPLES", "2"))
STEPS = int(os.environ.get("SCHEMASAGA_PROPERTY_STEPS", "8"))

ENGINES = [
    pytest.param("byodb_pg_url", id="postgresql"),
    pytest.param("byodb_mysql_url", id="mysql", marks=pytest.mark.mariadb),
    pytest.param("byodb_sqlite_url", id="sqlite"),
]

# Defaults that fit each type, and a few that do not fit some (refused with 422 invalid_default).
DEFAULTS: dict[str, list[Any]] = {
    "integer": [0, 7, -3],
    "bigint": [2**40, 5],
    "text": ["hello", "it's", "12"],
    "string": ["abc", "", "42"],
    "boolean": [True, False],
    "float": [1.5, 0.25],
    "decimal": ["9.90", "-1.5"],
    "date": ["2024-02-29"],
    "timestamp": ["2024-01-01T10:00:00"],
    "datetime": ["2024-01-01T02:00:00+00:00"],
    "json": [{"a": 1}, [1, 2], "x"],
    "uuid": ["0b6e0b1c-5d3e-4f6a-9a7b-1c2d3e4f5a6b"],
}
BAD_DEFAULTS = ["abc", 1.5, {"no": "fit"}, "2024-13-40"]

TYPES = [t.value for t in ColumnType]
COLUMN_NAMES = ["alpha", "beta", "gamma", "delta", "Alpha", "id"]
INDEX_NAMES = [None, None, "ix_one", "ix_two"]
_tables = itertools.count()


@pytest.fixture(params=ENGINES)
def byodb_url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(request.param)
    return value


@pytest.fixture
async def service_and_client(
    settings_factory: Callable[..., Settings], byodb_url: str
) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    async with running_service(settings_factory(byodb_url)) as container:
        transport = httpx.ASGITransport(app=container.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            yield container, c


# -- the changes --------------------------------------------------------------------------------------


@dataclass
class Change:
    what: str
    method: str
    path: str
    body: dict[str, Any] | None
    expect: Callable[[dict[str, Any]], None] | None = None  # checks show after it completed


def _column(shown: dict[str, Any], name: str) -> dict[str, Any] | None:
    return shown["columns"].get(name)


def _rarely(data: st.DataObject, label: str) -> bool:
    """True about one time in six: for the requests that are refused (a missing column, the key)."""
    return data.draw(st.integers(0, 5), label=label) == 0


def draw_change(data: st.DataObject, shown: dict[str, Any], *, engine: str, serial: int) -> Change:
    base = f"/v1/tables/{shown['table_id']}"
    names = list(shown["columns"])
    # Mostly the columns a change may touch; the primary key (refused) now and then.
    editable = [n for n in names if n not in shown["primary_key"]] or names
    kind = data.draw(
        st.sampled_from(
            [
                "add_column",
                "add_column",
                "patch_column",
                "patch_column",
                "patch_column",
                "drop_column",
                "add_index",
                "drop_index",
                "rename_table",
                "insert_row",
            ]
        ),
        label="kind",
    )
    if kind == "drop_index" and not shown["indexes"] and data.draw(st.booleans(), label="add instead"):
        kind = "add_index"
    if kind == "add_column":
        type_ = data.draw(st.sampled_from(TYPES), label="type")
        spec: dict[str, Any] = {"name": data.draw(st.sampled_from(COLUMN_NAMES), label="name"), "type": type_}
        if data.draw(st.booleans(), label="with nullable"):
            spec["nullable"] = data.draw(st.booleans(), label="nullable")
        if data.draw(st.booleans(), label="with default"):
            spec["default"] = data.draw(st.sampled_from(DEFAULTS[type_] + BAD_DEFAULTS[:1]), label="default")
        if data.draw(st.booleans(), label="with unique"):
            spec["unique"] = data.draw(st.booleans(), label="unique")

        def added(after: dict[str, Any]) -> None:
            column = _column(after, spec["name"])
            assert column is not None and column["type"] == type_
            assert column["nullable"] == spec.get("nullable", True)
            assert column["unique"] == spec.get("unique", False)
            assert (column["default"] is None) == (spec.get("default") is None)

        return Change("add column", "POST", f"{base}/columns", spec, added)
    if kind == "patch_column":
        name = data.draw(st.sampled_from(names if _rarely(data, "any") else editable), label="column")
        current = shown["columns"][name]
        patch: dict[str, Any] = {}
        if data.draw(st.booleans(), label="rename"):
            patch["name"] = data.draw(st.sampled_from([n + "_r" for n in names] + COLUMN_NAMES), label="to")
        if data.draw(st.booleans(), label="retype"):
            along = sorted(b.value for (a, b) in TYPE_CHANGES[engine] if a.value == current["type"])
            choices = along if along and data.draw(st.integers(0, 4), label="off") else TYPES
            patch["type"] = data.draw(st.sampled_from(choices), label="type")
        if data.draw(st.booleans(), label="nullability"):
            patch["nullable"] = data.draw(st.booleans(), label="nullable")
        if data.draw(st.booleans(), label="default"):
            type_ = patch.get("type", current["type"])
            patch["default"] = data.draw(
                st.sampled_from([None, None, *DEFAULTS[type_], BAD_DEFAULTS[0]]), label="default"
            )
        if data.draw(st.booleans(), label="uniqueness"):
            patch["unique"] = data.draw(st.booleans(), label="unique")

        def patched(after: dict[str, Any]) -> None:
            column = _column(after, patch.get("name", name))
            assert column is not None, (patch, list(after["columns"]))
            for field in ("type", "nullable", "unique"):
                if field in patch:
                    assert column[field] == patch[field], (field, patch, column)
            if "default" in patch:
                assert (column["default"] is None) == (patch["default"] is None), (patch, column)

        return Change(f"patch column {name}", "PATCH", f"{base}/columns/{name}", patch, patched)
    if kind == "drop_column":
        name = data.draw(
            st.sampled_from([*names, "missing"] if _rarely(data, "any") else editable), label="column"
        )
        return Change(
            f"drop column {name}",
            "DELETE",
            f"{base}/columns/{name}",
            None,
            lambda after: _expect(name not in after["columns"]),
        )
    if kind == "add_index":
        columns = data.draw(
            st.lists(
                st.sampled_from([*names, "missing"] if _rarely(data, "any") else names),
                min_size=1,
                max_size=2,
                unique=True,
            ),
            label="on",
        )
        index: dict[str, Any] = {"columns": columns, "unique": data.draw(st.booleans(), label="unique")}
        index_name = data.draw(st.sampled_from(INDEX_NAMES), label="index name")
        if index_name is not None:
            index["name"] = index_name
        return Change(
            "add index",
            "POST",
            f"{base}/indexes",
            index,
            lambda after: _expect(
                any(i["columns"] == columns and i["unique"] == index["unique"] for i in after["indexes"])
            ),
        )
    if kind == "drop_index":
        existing = [i["name"] for i in shown["indexes"]]
        name = data.draw(
            st.sampled_from(
                [*existing, "ix_missing"] if _rarely(data, "any") else existing or ["ix_missing"]
            ),
            label="index",
        )
        return Change(
            f"drop index {name}",
            "DELETE",
            f"{base}/indexes/{name}",
            None,
            lambda after: _expect(name not in [i["name"] for i in after["indexes"]]),
        )
    if kind == "rename_table":
        stem = shown["name"].split("_")[0]
        choices = [f"{stem}_n{serial}", stem.upper(), shown["name"].upper(), "id"]
        new = data.draw(
            st.sampled_from([*choices, shown["name"]] if _rarely(data, "any") else choices),
            label="table name",
        )
        return Change(
            f"rename table to {new}",
            "PATCH",
            base,
            {"name": new},
            lambda after: _expect(after["name"] == new),
        )
    return Change("insert row", "SQL", "", None)


def _expect(condition: bool) -> None:
    assert condition


def insert_row(url: str, table: str, key: int) -> None:
    """A row with its key only (the others take their defaults or NULL), behind the service's back;
    a NOT NULL column without a default refuses it, which is fine."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.table(table, sa.column("id")).insert().values(id=key))
    except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
        # (MariaDB answers a NOT NULL column without a default with an OperationalError, 1364)
        if isinstance(exc, sa.exc.OperationalError) and "1364" not in str(exc):
            raise
    finally:
        engine.dispose()


# -- the property ------------------------------------------------------------------------------------


async def settled_and_consistent(
    container: Container, client: httpx.AsyncClient, table_id: str, *, url: str, engine: str
) -> dict[str, Any]:
    await wait_synced(client, table_id)
    r = await client.get(f"/v1/tables/{table_id}")
    assert r.status_code == 200, r.text
    shown: dict[str, Any] = r.json()
    live = await asyncio.to_thread(read_live, url, shown["name"])
    assert_shown_is_live(shown, live, engine=engine)
    result = await verify(container.drift, container.reads)
    assert result.divergences == 0 and not result.unsettled, (
        result.scans.failed,
        [(d.name, d.issues) for r in result.scans.reports for d in r.drifted],
        result.stuck,
    )
    return shown


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # A failing sequence is printed step by step (note); shrinking it against a live service is long.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_random_edits_keep_show_equal_to_the_live_schema(
    service_and_client: tuple[Container, httpx.AsyncClient], byodb_url: str, data: st.DataObject
) -> None:
    container, client = service_and_client
    engine = sa.make_url(byodb_url).get_backend_name()
    engine = "mysql" if engine == "mariadb" else engine
    serial = next(_tables)
    name = f"p{serial}"
    initial = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(COLUMN_NAMES[:4]), "type": st.sampled_from(TYPES)}
            ),
            max_size=2,
            unique_by=lambda c: c["name"],
        ),
        label="initial columns",
    )
    r = await client.post("/v1/tables", json={"name": name, "columns": initial})
    assert r.status_code == 202, r.text
    table_id = r.json()["table_id"]
    assert (await wait_operation(client, r.json()["operation_id"]))["status"] == "completed"
    shown = await settled_and_consistent(container, client, table_id, url=byodb_url, engine=engine)
    keys = itertools.count(1)

    try:
        for step in range(data.draw(st.integers(1, STEPS), label="steps")):
            change = draw_change(data, shown, engine=engine, serial=step)
            note(f"{step}: {change.what} {change.method} {change.path} {change.body}")
            if change.method == "SQL":
                await asyncio.to_thread(insert_row, byodb_url, shown["name"], next(keys))
                continue
            before = await counts(container)
            r = await client.request(change.method, change.path, json=change.body)
            note(f"   -> {r.status_code} {r.text[:300]}")
            assert r.status_code in (202, 400, 404, 409, 422), r.text
            if r.status_code == 202:
                operation = await wait_operation(client, r.json()["operation_id"])
                assert operation["status"] == "completed", operation
                after = await settled_and_consistent(
                    container, client, table_id, url=byodb_url, engine=engine
                )
                assert after["version"] > shown["version"]
                if change.expect is not None:
                    change.expect(after)
                shown = after
            else:
                assert error_of(r)["code"], r.text
                assert await counts(container) == before, "a refused change wrote something"
                again = await settled_and_consistent(
                    container, client, table_id, url=byodb_url, engine=engine
                )
                assert again["version"] == shown["version"], "a refused change moved the version"
                shown = again
    finally:
        # Also when hypothesis stops an example whose draws ran out: no table of it stays behind (its index
        # names would be taken for the next examples on PostgreSQL and SQLite).
        r = await client.delete(f"/v1/tables/{table_id}")
        if r.status_code == 202:
            await wait_operation(client, r.json()["operation_id"])
