"""A property-based fuzz run of the service's own OpenAPI document (schemathesis) against the real
service: a fresh PostgreSQL core, a SQLite BYODB and a worker, in-process, on one event loop.

Every operation of ``/openapi.json`` gets generated requests, valid and invalid (schemathesis' examples,
coverage and fuzzing phases), and every answer must be no server error, have a status the document
declares for the operation, the content type it declares and a body valid against the schema it
declares for that status; a method the path does not serve must answer 405 with an ``Allow`` that
lists every method the path serves.

A third of the requests are as generated, a third carry real ids (tables, an operation, registered
databases) and valid names (a SQLite file in the test's folder for a registration), so that the
routes meet existing things too, and a third carry a NUL character in every text parameter of their
path and query (the generator seldom puts one there).

Registering a database makes the service connect where the request says: the settings allow only
127.0.0.1 (a generated host name is refused as written, before any look-up) and SQLite files in the
test's folder; webhooks too may only send to 127.0.0.1.

``SCHEMASAGA_FUZZ_EXAMPLES`` (default 25) is the fuzzing phase's number of examples per operation;
``SCHEMASAGA_FUZZ_SEED`` the seed (fixed by default, so that a run repeats). ``-s`` shows the counts.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from schemasaga.api.app import create_app
from schemasaga.config import Settings
from schemasaga.domain.columns import ColumnType
from tests.conftest import create_database, drop_database, with_dbname
from tests.integration.conftest import fast_settings, running_service

pytestmark = [
    pytest.mark.slow,
    # The service runs on another thread while hypothesis draws a request, and its connection pools draw
    # from the global `random` (psycopg_pool's jitter on each new connection): hypothesis sees the state
    # change under it and blames the strategy.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

EXAMPLES = int(os.environ.get("SCHEMASAGA_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("SCHEMASAGA_FUZZ_SEED", "20240613"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    # A method the path does not serve answers 405, with an Allow listing every method it serves.
    unsupported_method,
    allow_header_conformance,
]


class ServiceApp:
    """The real service as one ASGI application: its lifespan opens the container (pools, job queue,
    BYODB connections) and starts a worker on the event loop that then serves the requests, as
    ``schemasaga serve`` does around uvicorn."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.web: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.web(scope, receive, send)
            return
        await receive()  # lifespan.startup
        async with running_service(self.settings) as container:
            self.web = container.web_app()
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


@dataclass
class Seeds:
    """Real identifiers and valid names, put into about a third of the generated requests: without them
    nearly every generated id is unknown and nearly every generated name invalid, and the routes would
    rarely answer anything but 404 and 422."""

    keep: str  # never deleted: the routes that read or change a table find it alive
    doomed: list[str]  # for the delete routes
    operation_id: str
    sqlite_dir: Path  # where databases may be registered
    databases: list[str] = field(default_factory=lambda: ["default"])
    names: Iterator[int] = field(default_factory=count)
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)

    def seeded(self, case: schemathesis.Case) -> schemathesis.Case:
        label = case.operation.label
        n = next(self.names)
        deleting = label in ("POST /table/delete", "DELETE /v1/tables/{table_id}")
        table_id = self.doomed[n % len(self.doomed)] if deleting else self.keep
        path = case.path_parameters
        if isinstance(path, dict):
            if "table_id" in path:
                path["table_id"] = table_id
            if "operation_id" in path:
                path["operation_id"] = self.operation_id
            if "name" in path:
                path["name"] = self.databases[n % len(self.databases)] if "/databases/" in label else "age"
        body = case.body
        if label == "POST /v1/databases" and isinstance(body, dict):
            body.update(name=f"fuzz_db_{n}", url=f"sqlite:///{self.sqlite_dir / f'fuzz_{n}.sqlite3'}")
            self.databases.append(body["name"])
        elif isinstance(body, dict):
            if "table_id" in body:
                body["table_id"] = table_id
            if isinstance(body.get("name"), str):
                body["name"] = f"fuzz_{n}"
            if "database" in body:
                body["database"] = "default"
            if "type" in body:
                body["type"] = ColumnType.TEXT.value
            if isinstance(body.get("column"), dict):
                body["column"]["name"] = f"fuzz_{n}"
                if isinstance(body["column"].get("type"), str):
                    body["column"]["type"] = ColumnType.TEXT.value
        return case

    @staticmethod
    def with_nul(case: schemathesis.Case) -> schemathesis.Case:
        """A NUL character in every text parameter of the path and the query: PostgreSQL refuses it in
        text, and the generator seldom puts one there."""
        for parameters in (case.path_parameters, case.query):
            if isinstance(parameters, dict):
                for key, value in parameters.items():
                    if isinstance(value, str):
                        parameters[key] = f"{value}\x00"
        return case


def _seed(client: Any, sqlite_dir: Path) -> Seeds:
    accepted = []
    for name in ("fuzz_keep", "fuzz_doomed_1", "fuzz_doomed_2", "fuzz_doomed_3"):
        r = client.post("/v1/tables", json={"name": name})
        assert r.status_code == 202, r.text
        accepted.append(r.json())
    deadline = time.monotonic() + 20
    for a in accepted:
        while client.get(a["operation_url"]).json()["status"] != "completed":
            assert time.monotonic() < deadline, f"table not created: {a}"
            time.sleep(0.05)
    keep = accepted[0]["table_id"]
    r = client.post(f"/v1/tables/{keep}/columns", json={"name": "age", "type": "integer"})
    assert r.status_code == 202, r.text
    return Seeds(
        keep=keep,
        doomed=[a["table_id"] for a in accepted[1:]],
        operation_id=accepted[0]["operation_id"],
        sqlite_dir=sqlite_dir,
    )


# The document of the app factory the service runs (describing the routes needs no service); the
# fixture checks that the running service serves this very document.
DOCUMENT_APP = create_app(None)  # type: ignore[arg-type]
# The live event feed is left out: a valid request to it streams until the client goes, and schemathesis
# reads an answer whole. tests/integration/test_feed.py covers its answers, refusals included.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    DOCUMENT_APP,
    config=schemathesis.Config.from_dict({"seed": SEED, "generation": {"max-examples": EXAMPLES}}),
).exclude(path="/v1/events/stream")


@dataclass
class Fuzz:
    app: ServiceApp
    seeds: Seeds


RUN: list[Fuzz] = []  # the module's service, for the hook below


@schema.hook
def flatmap_case(_: schemathesis.HookContext, case: schemathesis.Case) -> Any:
    seeds = RUN[0].seeds
    variants = {
        "generated": lambda: case,
        "real": lambda: seeds.seeded(case),
        "nul": lambda: seeds.with_nul(case),
    }
    return st.sampled_from(sorted(variants)).map(lambda variant: variants[variant]())


@pytest.fixture(scope="module")
def fuzz(pg_server: str, core_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    """One service for every operation: a fresh core database, a SQLite BYODB."""
    core = create_database(pg_server, template=core_template)
    folder = tmp_path_factory.mktemp("fuzz")
    settings = fast_settings(
        database_url=with_dbname(pg_server, core),
        byodb_url=f"sqlite:///{folder / 'byodb.sqlite3'}",
        sqlite_dir=folder,
        byodb_allowed_hosts="127.0.0.1",
        # A generated webhook may only send to 127.0.0.1 (a name is refused as written, never resolved).
        webhook_allowed_hosts="127.0.0.1",
    )
    app = ServiceApp(settings)
    try:
        with get_client(app) as client:
            assert client.get("/openapi.json").json() == DOCUMENT_APP.openapi()
            RUN.append(Fuzz(app=app, seeds=_seed(client, folder)))
        yield RUN[0]
        seeds = RUN[0].seeds
        print(f"\nfuzz: {len(seeds.calls)} operations, {sum(seeds.calls.values())} requests")
        for label, n in sorted(seeds.calls.items()):
            answered = {s: c for (lbl, s), c in sorted(seeds.statuses.items()) if lbl == label}
            print(f"  {label}: {n} requests, statuses {answered}")
    finally:
        RUN.clear()
        shutdown_lifespans()
        drop_database(pg_server, core)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case: schemathesis.Case, fuzz: Fuzz) -> None:
    label = case.operation.label
    fuzz.seeds.calls[label] += 1
    response = case.call(app=fuzz.app)
    fuzz.seeds.statuses[(label, response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)
