"""Fixtures of the fault suite: a proxied BYODB and a factory of real-process services, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from tests.fault.harness import Service
from tests.fault.proxy import TcpProxy


@pytest.fixture
def byodb_proxy(empty_pg_db: str) -> Iterator[TcpProxy]:
    """A cuttable TCP proxy in front of the PostgreSQL server holding the test's BYODB."""
    params = conninfo_to_dict(empty_pg_db)
    host = str(params.get("host", "127.0.0.1"))
    if host.startswith("/"):
        pytest.skip("the BYODB server listens on a Unix socket; the proxy needs TCP")
    with TcpProxy((host, int(params.get("port", 5432)))) as proxy:
        yield proxy


@pytest.fixture
def proxied_byodb_url(byodb_pg_url: str, byodb_proxy: TcpProxy) -> str:
    url = make_url(byodb_pg_url).set(host="127.0.0.1", port=byodb_proxy.port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def make_service(core_db: str, byodb_pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Build a :class:`Service`; every process it starts is killed at the end of the test."""
    made: list[Service] = []

    def make(*, byodb_url: str | None = None, **env: str) -> Service:
        svc = Service(
            core_conninfo=core_db,
            byodb_url=byodb_url or byodb_pg_url,
            physical_url=byodb_pg_url,
            workdir=tmp_path,
            env_overrides=env,
        )
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.kill_all()
