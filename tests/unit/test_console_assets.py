"""The console's templates and stylesheet ship in the package: an installed (non-editable) package has
only the files its package data names, so every file under ``console/`` must match one of its globs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import schemasaga

ROOT = Path(schemasaga.__file__).parent
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_every_console_asset_is_package_data() -> None:
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["schemasaga"]
    assets = {p.relative_to(ROOT) for p in (ROOT / "console").rglob("*") if p.is_file()}
    shipped = {p.relative_to(ROOT) for g in globs for p in ROOT.glob(g)}
    assert assets and {"console/templates/base.html", "console/static/console.css"} <= {
        str(a) for a in assets
    }
    assert assets - shipped == set()
