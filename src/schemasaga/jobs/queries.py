"""Every query of procrastinate's tables that is not procrastinate's own (``sql/queries/jobs.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import procrastinate
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from schemasaga.sql import queries

Q = queries("jobs")

RUN_SAGA = "schemasaga.run_saga"
DELIVER_WEBHOOK = "schemasaga.deliver_webhook"


def webhook_lock(webhook_id: UUID, stream: str | None) -> str:
    """The deliveries of one webhook and one stream (a table's) run one at a time, in queue order."""
    return f"webhook:{webhook_id}:{stream or ''}"


def table_lock(table_id: UUID) -> str:
    """The job lock of a table: no two jobs holding it run at once."""
    return f"table:{table_id}"


async def start_operation(
    conn: AsyncConnection[Any], *, operation_id: UUID, job_id: int | None
) -> int | None:
    """Mark the operation running and count its starts, in one statement: None when another job of the
    operation waits for its backoff (asked only with ``job_id``, the job that runs it), else its starts,
    this time included (0 when the read model does not know it as open)."""
    cur = await conn.execute(
        Q["start_operation"],
        {"task_name": RUN_SAGA, "job_id": job_id, "operation_id": str(operation_id)},
        prepare=True,
    )
    row = await cur.fetchone()
    assert row is not None  # the outer SELECT always answers one row
    retry, starts = row
    if retry:
        return None
    return 0 if starts is None else int(starts)


async def stuck_operations(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    """Unfinished operations (rm_operations rows) whose table has no job waiting or running."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["stuck_operations"])
        return await cur.fetchall()


async def held_jobs(app: procrastinate.App, *, worker_id: int) -> list[int]:
    """The jobs the queue says worker ``worker_id`` is running."""
    rows = await app.connector.execute_query_all_async(Q["held_jobs"], worker_id=worker_id)
    return [int(row["id"]) for row in rows]


async def queue_size_against_statistics(app: procrastinate.App) -> tuple[int, int]:
    """(jobs in the table now, jobs the planner's statistics believe it holds)."""
    row = await app.connector.execute_query_one_async(Q["queue_size_against_statistics"])
    return int(row["rows"]), int(row["analyzed_rows"])


async def analyze_queue(app: procrastinate.App) -> None:
    await app.connector.execute_query_async(Q["analyze_queue"])


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The job queue at one moment: jobs ready to run, scheduled for later, running; seconds the oldest
    ready one has waited (0 when none waits)."""

    ready: int
    scheduled: int
    doing: int
    oldest_ready_age: float


async def queue_stats(conn: AsyncConnection[Any]) -> QueueStats:
    cur = await conn.execute(Q["queue_stats"])
    row = await cur.fetchone()
    assert row is not None  # an aggregate always answers one row
    ready, scheduled, doing, age = row
    return QueueStats(ready=ready, scheduled=scheduled, doing=doing, oldest_ready_age=max(0.0, float(age)))
