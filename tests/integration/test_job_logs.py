"""A saga job's log lines carry its own operation's id, also after it ran the table's changes queued behind
it (each of those logged under its own id while it ran)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from schemasaga import logcontext
from schemasaga.observability import logs
from tests.integration.conftest import wait_synced
from tests.integration.test_saga_flow import create_table


class _Bound(logging.Handler):
    """Each record's message with the operation id bound when it was written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), logcontext.current().get("operation_id")))


@pytest.fixture
def bound() -> Iterator[_Bound]:
    handler = _Bound()
    names = ("procrastinate.worker", "schemasaga.services.sagas.runner")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def test_a_job_that_ran_queued_changes_ends_under_its_own_operation(
    client: httpx.AsyncClient, bound: _Bound
) -> None:
    table_id = await create_table(client, "chained")
    await wait_synced(client, table_id)

    async def add(i: int) -> int:
        body = {"table_id": table_id, "column": {"name": f"c{i:02d}", "type": "text"}}
        return (await client.post("/table/column", json=body)).status_code

    assert await asyncio.gather(*(add(i) for i in range(12))) == [200] * 12
    await wait_synced(client, table_id, timeout=60)
    # Give the fallback jobs (which find their operations finished) time to end.
    for _ in range(100):
        ended = [(m, op) for m, op in bound.lines if "ended with status" in m]
        if len(ended) >= 13:
            break
        await asyncio.sleep(0.1)
    chained = [m for m, _ in bound.lines if "already finished; nothing to do" in m]
    assert chained, "no job ran a change queued behind its own: the test shows nothing"
    for message, operation in ended:
        [own] = re.findall(r"operation_id='([0-9a-f-]+)'", message)
        assert operation == own, message
    completed = [(m, op) for m, op in bound.lines if m.startswith("operation ") and " completed" in m]
    assert len(completed) >= 12
    for message, operation in completed:
        assert operation is not None and message.startswith(f"operation {operation} "), message


async def test_a_failed_statement_in_a_pipeline_logs_no_second_ignored_error(core_db: str) -> None:
    """A unique violation raised inside a pipeline block (as a taken name is, in the request's projection)
    reaches the caller; psycopg's "error ignored terminating ...: pipeline aborted" about that same failure
    is not written to the service's log."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    logs.configure(level="DEBUG", log_format="json", stream=buffer)
    try:
        async with await psycopg.AsyncConnection.connect(core_db, autocommit=True) as conn:
            await conn.execute("CREATE TEMP TABLE t (id integer PRIMARY KEY)")
            await conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(psycopg.errors.UniqueViolation):
                async with conn.pipeline():
                    cur = conn.cursor()
                    await cur.execute("INSERT INTO t VALUES (1)")
                    await asyncio.sleep(
                        0.2
                    )  # the failure is back by the next statement, sent before it is read
                    await cur.execute("SELECT 1")  # raises the failure; this statement is left aborted
            assert await (await conn.execute("SELECT count(*) FROM t")).fetchone() == (1,)
    finally:
        for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
            root.removeHandler(handler)
        root.setLevel(level)
    assert "pipeline aborted" not in buffer.getvalue()
    assert "error ignored terminating" not in buffer.getvalue()
