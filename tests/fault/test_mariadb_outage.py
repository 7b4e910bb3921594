"""Item 1 on MariaDB: the BYODB (MariaDB, whose DDL commits implicitly) goes away behind the TCP proxy
while commands keep arriving; sagas retry and complete once it is back, and metadata equals the
physical schema read from MariaDB itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.fault.harness import Service, add_column, check_consistency, create_table, open_operations, settle
from tests.fault.proxy import TcpProxy

pytestmark = [pytest.mark.fault, pytest.mark.acceptance, pytest.mark.slow, pytest.mark.mariadb]


@pytest.fixture
def mariadb_proxy(byodb_mysql_url: str) -> Iterator[TcpProxy]:
    url = make_url(byodb_mysql_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 3306)) as proxy:
        yield proxy


def test_mariadb_outage_shorter_than_the_retry_budget_heals(
    byodb_mysql_url: str, mariadb_proxy: TcpProxy, core_db: str, tmp_path: Path
) -> None:
    proxied = make_url(byodb_mysql_url).set(host="127.0.0.1", port=mariadb_proxy.port)
    svc = Service(
        core_conninfo=core_db,
        byodb_url=proxied.render_as_string(hide_password=False),
        physical_url=byodb_mysql_url,
        workdir=tmp_path,
    )
    try:
        svc.start_server()
        svc.start_worker()
        with svc.client() as c:
            before, _ = create_table(c, "before_outage")
            settle(c, timeout=30)
            mariadb_proxy.cut()
            ops = []
            tables = [before]
            for i in range(2):
                tid, op = create_table(c, f"during_outage_{i}")
                tables.append(tid)
                ops.append(op)
            for i, tid in enumerate(tables):
                r = add_column(c, tid, f"age_{i}")
                assert r.status_code == 200, r.text  # accepted although the BYODB is down
                ops.append(r.json()["operation_id"])
            time.sleep(2.0)
            assert open_operations(c), "the operations should still be waiting for the BYODB"
            mariadb_proxy.restore()
            recovery = settle(c, timeout=60)
            seen = [c.get(f"/v1/operations/{op}").json() for op in ops]
            assert {o["status"] for o in seen} == {"completed"}, seen
            assert all(o["attempts"] > 1 for o in seen if o["kind"] == "create_table"), seen
            check_consistency(c, svc.physical_url)
        print(
            f"MariaDB outage: settled {recovery:.2f}s after restore; attempts {[o['attempts'] for o in seen]}"
        )
    finally:
        svc.kill_all()
