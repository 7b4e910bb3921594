"""``?wait=SECONDS`` on changes and on ``GET /v1/operations/{id}``: the answer comes when the operation
finished (200, the operation as the operations route shows it), or when the time ran out (202 as
without it); the API hears of finished operations through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import psycopg

from schemasaga.bootstrap import Container
from schemasaga.config import Settings
from schemasaga.coredb.notices import OperationNotices
from schemasaga.services.tables import only_accepted
from schemasaga.services.views import OperationView, ReadModels
from schemasaga.worker import run_worker
from tests.conftest import error_of
from tests.integration.conftest import running_service, wait_operation


async def test_a_change_with_wait_answers_the_finished_operation(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tables?wait=25", json={"name": "waited"})
    assert r.status_code == 200, r.text
    operation = r.json()
    assert operation["status"] == "completed" and operation["kind"] == "create_table"
    assert r.headers["location"] == f"/v1/operations/{operation['operation_id']}"
    assert operation == (await client.get(r.headers["location"])).json()
    table_id = operation["table_id"]
    added = await client.post(f"/v1/tables/{table_id}/columns?wait=25", json={"name": "n", "type": "integer"})
    assert added.status_code == 200 and added.json()["status"] == "completed", added.text
    refused = await client.post(f"/v1/tables/{table_id}/columns?wait=25", json={"name": "m", "type": "nope"})
    assert refused.status_code == 422  # refused before anything is accepted: no wait


async def test_wait_out_of_range_is_422_and_writes_nothing(
    client: httpx.AsyncClient, service: Container
) -> None:
    before = len(await service.store.read_all())
    for wait in ("31", "0", "-1", "abc"):
        r = await client.post(f"/v1/tables?wait={wait}", json={"name": "never"})
        assert r.status_code == 422, (wait, r.text)
        assert error_of(r)["code"] == "invalid_request"
    assert (await client.get("/v1/tables")).json()["items"] == []
    assert len(await service.store.read_all()) == before


async def test_when_the_time_runs_out_the_answer_is_202(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    # No worker: nothing finishes.
    async with running_service(settings_factory(byodb_pg_url), worker=False) as svc:
        transport = httpx.ASGITransport(app=svc.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            r = await c.post("/v1/tables?wait=0.3", json={"name": "pending_one"})
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "accepted"
            assert r.headers["location"] == r.json()["operation_url"]
            polled = await c.get(f"{r.json()['operation_url']}?wait=0.3")
            assert polled.status_code == 200 and polled.json()["status"] == "pending"


async def test_a_waiter_is_woken_by_the_notice_not_by_polling(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, core_db: str
) -> None:
    """With rechecks an hour apart and a timeout of two minutes, only the notice of the finished operation
    can end the wait within the 30 s this test gives it."""
    async with running_service(settings_factory(byodb_pg_url), worker=False) as svc:
        accepted = await svc.tables.create_table(name="heard", database="default", metadata={})
        operation_id = only_accepted(accepted).operation_id
        notices = OperationNotices(core_db, svc.reads, recheck=3600)
        try:
            waiting = asyncio.create_task(notices.wait(operation_id, timeout=120))
            await asyncio.sleep(0.5)  # the waiter has read the operation (pending) and listens
            assert not waiting.done()
            worker = asyncio.create_task(run_worker(svc.worker, concurrency=2, stop_on_signals=False))
            try:
                finished = await asyncio.wait_for(waiting, 30)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            assert finished is not None and finished.status == "completed"
        finally:
            await notices.close()


async def test_get_operation_with_wait_long_polls(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tables", json={"name": "polled"})
    operation_url = r.json()["operation_url"]
    polled = await client.get(f"{operation_url}?wait=25")
    assert polled.status_code == 200 and polled.json()["status"] == "completed", polled.text
    assert polled.json() == await wait_operation(client, r.json()["operation_id"])
    assert (await client.get(f"{operation_url}?wait=30.5")).status_code == 422


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class _CountedReads:
    """The service's read models, counting the reads of an operation (the database is the real one)."""

    def __init__(self, reads: ReadModels) -> None:
        self._reads = reads
        self.operation_reads = 0

    async def get_operation(self, operation_id: UUID) -> OperationView | None:
        self.operation_reads += 1
        return await self._reads.get_operation(operation_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reads, name)


async def test_a_waiter_in_the_process_that_finished_the_operation_answers_from_its_committed_row(
    settings_factory: Callable[..., Settings], byodb_pg_url: str, empty_pg_db: str
) -> None:
    """The outcome's own transaction returns the operation's row: a waiter of this process answers with it
    once committed, without reading it again, and it is what a read then finds (completed or rejected)."""
    async with running_service(settings_factory(byodb_pg_url), worker=False) as svc:
        counted = _CountedReads(svc.reads)
        svc.waits._reads = counted  # type: ignore[assignment]
        # Neither the recheck nor the database's notice (heard before the committing task resumes, it
        # would have the waiter read the operation): only this process's commit ends the wait.
        svc.waits._recheck = 3600
        svc.waits._heard = lambda payload: None  # type: ignore[method-assign]
        created = only_accepted(
            await svc.tables.create_table(name="answered", database="default", metadata={})
        )
        squatted = only_accepted(
            await svc.tables.create_table(name="squatted", database="default", metadata={})
        )
        # Made behind the service's back before its saga runs: never taken over, the creation is rejected.
        with psycopg.connect(empty_pg_db, autocommit=True) as c:
            c.execute("CREATE TABLE squatted (id integer)")
        for accepted, status in ((created, "completed"), (squatted, "rejected")):
            counted.operation_reads = 0
            waiting = asyncio.create_task(svc.waits.wait(accepted.operation_id, timeout=20))
            await _until(lambda: counted.operation_reads == 1)  # the waiter read it (pending) and waits
            await asyncio.sleep(0.1)
            assert not waiting.done() and counted.operation_reads == 1
            await svc.runner.run(table_id=accepted.table_id, operation_id=accepted.operation_id)
            finished = await asyncio.wait_for(waiting, 5)
            assert counted.operation_reads == 1  # no read after the outcome
            assert finished is not None and finished.status == status
            assert finished == await svc.reads.get_operation(accepted.operation_id)


async def test_get_operation_with_wait_reads_the_operation_once(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    """The long poll watches the operation before its one read (its access check needs it): it waits
    without reading it again, and answers with the outcome's committed row."""
    async with running_service(settings_factory(byodb_pg_url), worker=False) as svc:
        counted = _CountedReads(svc.reads)
        svc.reads = svc.waits._reads = counted  # type: ignore[assignment]
        svc.waits._recheck = 3600
        svc.waits._heard = lambda payload: None  # type: ignore[method-assign]
        accepted = only_accepted(
            await svc.tables.create_table(name="polled_once", database="default", metadata={})
        )
        transport = httpx.ASGITransport(app=svc.web_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://schemasaga") as c:
            polling = asyncio.create_task(c.get(f"/v1/operations/{accepted.operation_id}?wait=20"))
            await _until(lambda: counted.operation_reads == 1)
            await asyncio.sleep(0.1)
            assert not polling.done() and counted.operation_reads == 1
            await svc.runner.run(table_id=accepted.table_id, operation_id=accepted.operation_id)
            polled = await asyncio.wait_for(polling, 5)
        assert polled.status_code == 200 and polled.json()["status"] == "completed", polled.text
        assert counted.operation_reads == 1
