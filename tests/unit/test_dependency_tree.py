"""The write routes' FastAPI dependency trees stay small: FastAPI walks every node of a route's tree on
each request (a cached dependency's subtree included, wherever it is declared), at tens of
microseconds a node, a fifth of the HTTP layer's CPU for a write before the trees were flattened."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from schemasaga.api import demo
from schemasaga.api.app import create_app
from schemasaga.api.deps import Services, authenticate
from schemasaga.api.v1 import tables


def walked(dependant: Dependant) -> int:
    """The nodes FastAPI's solve_dependencies visits for one request (itself not counted)."""
    return sum(1 + walked(sub) for sub in dependant.dependencies)


def route(router_routes: list[object], path: str, method: str) -> APIRoute:
    for r in router_routes:
        if isinstance(r, APIRoute) and r.path == path and method in r.methods:
            return r
    raise LookupError(path)


@pytest.mark.parametrize(
    ("routes", "path", "method", "most"),
    [
        (demo.router.routes, "/table/create", "POST", 5),
        (demo.router.routes, "/table/column", "POST", 6),
        (tables.router.routes, "/v1/tables/{table_id}/columns", "POST", 7),
    ],
)
def test_write_routes_walk_few_dependencies(routes: list[object], path: str, method: str, most: int) -> None:
    r = route(routes, path, method)
    assert walked(r.dependant) <= most, [d.call for d in r.dependant.dependencies]
    # The token is still checked once, by one declared dependency (its security scheme documented).
    tokens = [d for d in r.dependant.dependencies if any(s.call is authenticate for s in d.dependencies)]
    assert len(tokens) == 1


def test_write_routes_still_document_the_key_and_the_token() -> None:
    app = create_app(Services(**{f.name: None for f in dataclasses.fields(Services)}))
    operation = app.openapi()["paths"]["/table/create"]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["Idempotency-Key"]
    assert operation["security"] == [{"token": []}]
