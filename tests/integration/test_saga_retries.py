"""A change waiting for its backoff is retried by one job only."""

from __future__ import annotations

from collections.abc import Callable

from schemasaga.config import Settings
from schemasaga.domain.columns import Column, ColumnType
from tests.integration.conftest import running_service
from tests.integration.test_saga_flow import physical_columns


async def test_a_job_leaves_an_operation_to_its_scheduled_retry(
    settings_factory: Callable[..., Settings], byodb_pg_url: str
) -> None:
    """When a job runs the change queued behind its own and that change fails for a while, the retry
    is deferred with a backoff while the change's own job still waits. That job must not try at once
    (a second chain of retries, twice the attempts in the same time): it leaves the change to the
    scheduled retry."""
    async with running_service(settings_factory(byodb_pg_url), worker=False) as svc:
        created = await svc.tables.create_table(name="backoff", database="default", metadata={})
        await svc.runner.run(table_id=created.table_id, operation_id=created.operation_id)
        change = await svc.tables.add_column(
            table_id=created.table_id, column=Column("age", ColumnType.INTEGER), metadata={}
        )
        async with svc.pool.connection() as conn:
            # The retry a failed attempt defers, in the same way the runner does.
            retry = await svc.scheduler.run_saga(
                conn=conn, table_id=change.table_id, operation_id=change.operation_id, delay=60
            )
            rows = await (
                await conn.execute(
                    "SELECT id FROM procrastinate_jobs WHERE args ->> 'operation_id' = %s AND id <> %s",
                    (str(change.operation_id), retry),
                )
            ).fetchall()
        [(own_job,)] = rows

        await svc.runner.run(table_id=change.table_id, operation_id=change.operation_id, job_id=own_job)
        assert (await svc.reads.get_operation(change.operation_id)).status == "pending"
        assert "age" not in (physical_columns(byodb_pg_url, "backoff") or {})

        # The scheduled retry itself runs the change.
        await svc.runner.run(table_id=change.table_id, operation_id=change.operation_id, job_id=retry)
        assert (await svc.reads.get_operation(change.operation_id)).status == "completed"
        assert "age" in (physical_columns(byodb_pg_url, "backoff") or {})
