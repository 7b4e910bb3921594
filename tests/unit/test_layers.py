"""The package's layers, read from its own imports: each package imports only from the layers below it,
the domain imports nothing of the outside, and the import graph stays shallow.

    6 cli
    5 bootstrap  client              (the composition root; the Python client of the API)
    4 coredb   api   worker          (the core database, the web, the worker loop)
    3 services  observability        (use cases over ports; metrics, log format, readiness checks)
    2 eventstore  byodb  jobs  secrets
    1 domain  config  faults  sql  logcontext  tracing
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import schemasaga

ROOT = Path(schemasaga.__file__).parent

LAYERS: dict[str, int] = {
    "domain": 1,
    "config": 1,
    "faults": 1,
    "sql": 1,
    "logcontext": 1,
    "tracing": 1,
    "eventstore": 2,
    "byodb": 2,
    "jobs": 2,
    "secrets": 2,
    "services": 3,
    "observability": 3,
    "coredb": 4,
    "api": 4,
    "worker": 4,
    "bootstrap": 5,
    "cli": 6,
    "client": 5,
}


def package_of(path: Path) -> str:
    return path.relative_to(ROOT).with_suffix("").parts[0]


def imports() -> dict[str, set[str]]:
    """Package -> the packages of schemasaga it imports (``schemasaga.__version__`` is no package)."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        package = package_of(path)
        if package == "__init__":
            continue
        found = edges.setdefault(package, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "schemasaga":
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("schemasaga.")]
            found.update(n for n in names if n != package and n != "__version__")
    return edges


def test_every_package_has_a_layer() -> None:
    assert set(imports()) == set(LAYERS)


def test_no_package_imports_from_its_own_layer_or_above() -> None:
    upward = {
        (package, imported)
        for package, targets in imports().items()
        for imported in targets
        if LAYERS[imported] >= LAYERS[package]
    }
    assert upward == set()


def test_the_domain_imports_nothing_but_itself_and_the_standard_library() -> None:
    third_party = set()
    for path in (ROOT / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                top = node.names[0].name.split(".")[0]
            else:
                continue
            if top not in ("__future__", "schemasaga") and top not in _STANDARD_LIBRARY:
                third_party.add((path.name, top))
            if top == "schemasaga":
                assert node.module is None or node.module.startswith("schemasaga.domain"), path
    assert third_party == set()


_STANDARD_LIBRARY = {
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "hashlib",
    "hmac",
    "ipaddress",
    "json",
    "math",
    "pathlib",
    "re",
    "typing",
    "urllib",  # urllib.parse only (a webhook URL's parts): no I/O
    "uuid",
}


def test_the_import_graph_is_at_most_seven_packages_deep() -> None:
    edges = imports()

    @functools.cache
    def depth(package: str) -> int:
        return 1 + max((depth(p) for p in edges[package]), default=0)

    assert max(depth(p) for p in edges) <= 7
