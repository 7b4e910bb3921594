"""The services' decisions, on in-memory ports (tests/fakes.py): the unit of work's one rule for jobs and
its conflict retry, the table commands, and the saga runner's steps, retries, compensation and outcomes."""

from __future__ import annotations

import contextvars
from dataclasses import replace
from uuid import UUID, uuid4

import pytest

from schemasaga.byodb.errors import PermanentByodbError, TransientByodbError
from schemasaga.domain.columns import DEFAULT_COLUMNS, Column, ColumnType
from schemasaga.domain.errors import ConcurrentChange, DatabaseNotFound, NameTaken, TableNotFound
from schemasaga.domain.events import stream_name
from schemasaga.domain.schema import LiveColumn, LiveTable
from schemasaga.domain.table import OperationKind, Table
from schemasaga.services.sagas.runner import RetryPolicy, SagaRunner
from schemasaga.services.sagas.steps import SAGAS
from schemasaga.services.tables import Accepted, ColumnPatch, TableCommands
from schemasaga.services.unit_of_work import MAX_CONFLICT_RETRIES, Session, UnitOfWork
from tests.fakes import MemoryConnections, MemoryCore, MemoryDatabase

AGE = Column("age", ColumnType.INTEGER)


class World:
    def __init__(self, *, max_attempts: int = 3) -> None:
        self.core = MemoryCore()
        self.byodb = MemoryDatabase()
        self.connections = MemoryConnections({"default": self.byodb})
        self.uow = UnitOfWork(self.core, snapshot_every=5)
        self.tables = TableCommands(uow=self.uow, connections=self.connections)
        self.retry = RetryPolicy(max_attempts=max_attempts, base_delay=1.0, max_delay=30.0)
        self.runner = SagaRunner(uow=self.uow, connections=self.connections, retry=self.retry)
        # The registry's row of the default database, which a creation locks.
        self.core.state.databases["default"] = _registered("default")

    async def create(self, name: str = "people") -> Accepted:
        return await self.tables.create_table(name=name, database="default", metadata={"actor": "test"})

    async def run(self, accepted: Accepted, *, job_id: int | None = None) -> None:
        await self.runner.run(table_id=accepted.table_id, operation_id=accepted.operation_id, job_id=job_id)

    async def settled(self, name: str = "people") -> Accepted:
        created = await self.create(name)
        await self.run(created)
        return created

    async def table(self, table_id: UUID) -> Table:
        return await self.uow.load_table(table_id)

    def events(self, table_id: UUID) -> list[str]:
        return self.core.events(stream_name(table_id))


def _registered(name: str) -> object:
    from schemasaga.domain.database import DatabaseRegistered, DatabaseState

    state = DatabaseState(name=name)
    state.apply(
        DatabaseRegistered(
            name=name,
            engine="postgresql",
            display={},
            url_encrypted="x",
            key_id="k",
            source="config",
            server_version=None,
        ),
        at=MemoryCore().now(),
    )
    return state


# -- the unit of work ------------------------------------------------------------------------------


async def test_a_new_table_is_committed_with_the_job_of_its_creation() -> None:
    world = World()
    created = await world.create()
    assert world.events(created.table_id) == ["TableCreated"]
    assert [(j.table_id, j.operation_id, j.delay) for j in world.core.jobs] == [
        (created.table_id, created.operation_id, 0.0)
    ]


async def test_a_change_behind_one_in_flight_gets_no_job_until_its_turn() -> None:
    world = World()
    created = await world.create()
    change = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    # Queued behind the creation: only the creation's job exists.
    assert [j.operation_id for j in world.core.jobs] == [created.operation_id]
    await world.runner.run(table_id=created.table_id, operation_id=created.operation_id)
    # The creation's outcome was committed with the job of the change that is now at the head; the
    # job that finished the creation ran the change straight away too.
    assert [j.operation_id for j in world.core.jobs] == [created.operation_id, change.operation_id]
    table = await world.table(created.table_id)
    assert table.synced and "age" in table.confirmed_columns


async def test_a_creation_looks_at_its_database_only_in_create_table() -> None:
    world = World()
    created = await world.create()
    calls = len(world.byodb.calls)
    await world.run(created)

    assert world.events(created.table_id)[-1] == "TableCreationConfirmed"
    # The plan is checked, the refusal of a table already there rides on the inspection create_table
    # makes before its DDL, and the verification on the one it makes after (create_table raises when
    # the table it made or found is not the schema): no inspection of their own.
    assert world.byodb.calls[calls:] == [
        ("plan_change", "people"),
        ("create_table", "people"),
    ]


async def test_a_creation_verified_in_a_call_of_its_own_inspects() -> None:
    world = World()
    created = await world.create()
    table = await world.table(created.table_id)
    op = table.head
    assert op is not None
    create, verify = SAGAS[OperationKind.CREATE_TABLE]
    assert verify.check
    # As a resumed run verifies a creation recorded before (another call to the database's threads,
    # another copy of the context): the creation's read-back is not there, the table is inspected.
    contextvars.copy_context().run(create.action, world.byodb, table, op)
    calls = len(world.byodb.calls)
    contextvars.copy_context().run(verify.action, world.byodb, table, op)
    assert world.byodb.calls[calls:] == [("inspect_table", "people")]


@pytest.mark.parametrize("shape", ["same", "other"])
async def test_a_table_that_appeared_after_the_creation_was_accepted_is_refused_and_left(shape: str) -> None:
    world = World()
    created = await world.create()
    columns = (*DEFAULT_COLUMNS, AGE) if shape == "other" else DEFAULT_COLUMNS
    world.byodb.create_table("People", columns)  # the user's, made after the creation was accepted
    theirs = world.byodb.tables["People"]
    await world.run(created)

    table = await world.table(created.table_id)
    rejected = world.core.state.streams[stream_name(created.table_id)][-1]
    assert rejected.event_type == "TableCreationRejected" and not table.exists
    assert (
        "table 'People' appeared in the database before schemasaga created 'people'"
        in (rejected.data["reason"])
    )
    assert world.byodb.tables == {"People": theirs}  # left as it is, not dropped by a compensation


async def test_a_change_on_a_settled_table_gets_its_job_at_once() -> None:
    world = World()
    created = await world.settled()
    before = len(world.core.jobs)
    change = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    assert [j.operation_id for j in world.core.jobs[before:]] == [change.operation_id]


async def test_a_decision_that_fails_writes_nothing() -> None:
    world = World()
    created = await world.settled()
    events, jobs = world.events(created.table_id), list(world.core.jobs)
    with pytest.raises(Exception, match="primary key"):
        await world.tables.remove_column(table_id=created.table_id, name="id", metadata={})
    assert (world.events(created.table_id), world.core.jobs) == (events, jobs)


async def test_a_name_held_by_another_table_is_refused_and_nothing_is_written() -> None:
    world = World()
    await world.create("people")
    events, jobs = world.core.events(), list(world.core.jobs)
    with pytest.raises(NameTaken):
        await world.create("People")
    assert (world.core.events(), world.core.jobs) == (events, jobs)


async def test_a_table_in_an_unregistered_database_is_refused() -> None:
    world = World()
    world.connections.databases["gone"] = MemoryDatabase()  # known here, but not in the registry
    with pytest.raises(DatabaseNotFound):
        await world.tables.create_table(name="t", database="gone", metadata={})
    assert world.core.events() == [] and world.core.jobs == []


async def test_every_event_of_a_command_carries_its_metadata_and_correlation() -> None:
    world = World()
    created = await world.create()
    [event] = world.core.state.streams[stream_name(created.table_id)]
    assert event.metadata == {"actor": "test", "correlation_id": str(created.operation_id)}


async def test_a_stale_table_is_decided_again_on_fresh_state() -> None:
    world = World()
    created = await world.settled()
    stale = await world.table(created.table_id)
    # Another writer appends after the stale copy was loaded.
    await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    seen: list[int] = []

    async def work(session: Session) -> None:
        table = await session.table(created.table_id, loaded=stale)
        seen.append(table.version)
        table.record_drift([{"issue": "missing_table"}], scan_id=uuid4())

    await world.uow.run(work, metadata={})
    # Once the stream is locked, its version shows the copy is stale: the table is loaded anew and
    # decided on once, with no attempt lost on the stale copy.
    assert seen == [stale.version + 1]
    assert world.events(created.table_id)[-1] == "TableDriftDetected"


async def test_a_table_checked_at_save_is_taken_as_loaded_and_decided_again_when_stale() -> None:
    world = World()
    created = await world.settled()
    stream = stream_name(created.table_id)
    current = await world.table(created.table_id)
    seen: list[int] = []

    async def work(session: Session, loaded: Table) -> None:
        table = await session.table(created.table_id, loaded=loaded, check_at_save=True)
        seen.append(table.version)
        table.record_drift([{"issue": "missing_table"}], scan_id=uuid4())

    # A current copy: neither locked nor read again; the append's expected version is the check.
    locks, version = len(world.core.locked), current.version
    await world.uow.run(lambda session: work(session, current), metadata={})
    assert stream not in world.core.locked[locks:] and seen == [version]
    assert world.events(created.table_id)[-1] == "TableDriftDetected"

    # A stale copy: the append refuses it, and the next attempt loads the table anew under the lock.
    stale = await world.table(created.table_id)
    await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    seen.clear()
    await world.uow.run(lambda session: work(session, stale), metadata={})
    assert seen == [stale.version, stale.version + 1]


async def test_a_stale_table_checked_at_save_with_nothing_to_append_is_decided_again() -> None:
    world = World()
    created = await world.settled()
    stale = await world.table(created.table_id)
    await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    seen: list[int] = []

    async def work(session: Session) -> None:
        table = await session.table(created.table_id, loaded=stale, check_at_save=True)
        seen.append(table.version)

    await world.uow.run(work, metadata={})
    assert seen == [stale.version, stale.version + 1]


async def test_a_table_that_keeps_changing_gives_up_with_a_clear_error() -> None:
    world = World()
    created = await world.settled()

    async def always_stale(session: Session) -> None:
        table = await session.table(created.table_id)
        table.version -= 1  # as if another writer always came first
        table.record_drift([{"issue": "missing_table"}], scan_id=uuid4())

    events, commits = world.events(created.table_id), world.core.commits
    tries = 0

    async def counted(session: Session) -> None:
        nonlocal tries
        tries += 1
        await always_stale(session)

    with pytest.raises(ConcurrentChange):
        await world.uow.run(counted, metadata={})
    assert (world.events(created.table_id), world.core.commits) == (events, commits)
    assert tries == MAX_CONFLICT_RETRIES


async def test_snapshots_are_saved_every_n_events_and_loading_from_them_equals_replay() -> None:
    world = World()
    created = await world.settled()
    for i in range(4):
        change = await world.tables.add_column(
            table_id=created.table_id, column=Column(f"c{i}", ColumnType.TEXT), metadata={}
        )
        await world.run(change)
    stream = stream_name(created.table_id)
    # One snapshot each time the stream crossed a multiple of 5 events, at the version it reached.
    versions = [v for v, _ in world.core.state.snapshots[stream]]
    events = len(world.core.state.streams[stream])
    assert len(versions) == events // 5
    assert [(v + 1) // 5 for v in versions] == list(range(1, len(versions) + 1))
    replayed = Table(table_id=created.table_id)
    from schemasaga.domain.events import event_from_data

    for e in world.core.state.streams[stream]:
        replayed.apply(event_from_data(e.event_type, e.data))
    assert (await world.table(created.table_id)).state_equals(replayed)


# -- the saga runner -------------------------------------------------------------------------------


async def test_a_creation_runs_its_steps_and_is_confirmed() -> None:
    world = World()
    created = await world.settled()
    assert world.events(created.table_id) == [
        "TableCreated",
        "SagaStepCompleted",
        "SagaStepCompleted",
        "TableCreationConfirmed",
    ]
    live = world.byodb.tables["people"]
    assert [c.name for c in live.columns] == [c.name for c in DEFAULT_COLUMNS]
    assert world.core.state.running == {created.operation_id}


async def test_a_transient_failure_is_retried_later_with_backoff_then_given_up() -> None:
    world = World(max_attempts=3)
    created = await world.settled()
    change = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    world.byodb.fail["add_column"] = [TransientByodbError("lock timeout")] * 3
    delays = []
    for attempt in (1, 2):
        await world.run(change)
        retry = world.core.jobs[-1]
        assert (retry.operation_id, retry.delay) == (change.operation_id, world.retry.delay(attempt))
        delays.append(retry.delay)
        assert (await world.table(created.table_id)).head.failed_attempts == attempt  # type: ignore[union-attr]
    assert delays == [1.0, 2.0]
    await world.run(change)
    table = await world.table(created.table_id)
    assert table.synced and "age" not in table.confirmed_columns
    assert world.events(created.table_id)[-1] == "TableChangeRejected"
    assert (
        "gave up after 3 attempts"
        in world.core.state.streams[stream_name(created.table_id)][-1].data["reason"]
    )


async def test_a_permanent_failure_after_the_ddl_is_compensated_and_rejected() -> None:
    world = World()
    created = await world.settled()
    change = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    # The column is added, then the verification's inspection fails for good.
    world.byodb.fail["inspect_table"] = [PermanentByodbError("permission denied")]
    await world.run(change)
    # A permanent failure is not retried: the add step's undo runs at once.
    assert world.events(created.table_id)[-4:] == [
        "TableChanged",
        "SagaStepCompleted",
        "SagaCompensationStarted",
        "TableChangeRejected",
    ]
    assert world.byodb.tables["people"].column("age") is None  # the compensation dropped it
    table = await world.table(created.table_id)
    assert "age" not in table.columns and table.synced


async def test_a_rejected_removal_keeps_the_column() -> None:
    world = World()
    created = await world.settled()
    removal = await world.tables.remove_column(table_id=created.table_id, name="name", metadata={})
    world.byodb.fail["drop_column"] = [PermanentByodbError("dependent objects")]
    await world.run(removal)
    table = await world.table(created.table_id)
    assert "name" in table.confirmed_columns and world.byodb.tables["people"].column("name") is not None
    assert world.events(created.table_id)[-1] == "TableChangeRejected"


async def test_a_job_whose_operation_is_finished_does_nothing() -> None:
    world = World()
    created = await world.settled()
    events, jobs = world.events(created.table_id), list(world.core.jobs)
    await world.run(created)  # at-least-once delivery: the same job again
    assert (world.events(created.table_id), world.core.jobs) == (events, jobs)


async def test_a_job_leaves_its_operation_to_the_retry_scheduled_meanwhile() -> None:
    world = World()
    created = await world.settled()
    change = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    own_job = world.core.jobs[-1].id
    world.byodb.fail["add_column"] = [TransientByodbError("lock timeout")]
    await world.run(change)  # fails, and defers its retry
    events = world.events(created.table_id)
    await world.run(change, job_id=own_job)  # the change's own, older job runs late
    assert world.events(created.table_id) == events  # it left the change to the scheduled retry
    await world.run(change, job_id=world.core.jobs[-1].id)
    assert "age" in (await world.table(created.table_id)).confirmed_columns


async def test_a_change_to_a_table_that_does_not_exist_is_rejected_without_ddl() -> None:
    world = World()
    created = await world.create()
    change = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    world.byodb.fail["create_table"] = [PermanentByodbError("no privilege")]
    await world.run(created)  # the creation is rejected, then the change behind it
    rejected = world.core.state.streams[stream_name(created.table_id)][-1]
    assert rejected.event_type == "TableChangeRejected"
    assert rejected.data["operation_id"] == str(change.operation_id)
    assert "does not exist" in rejected.data["reason"]
    assert ("add_column", "people") not in world.byodb.calls


async def test_an_unknown_database_rejects_the_change_permanently() -> None:
    world = World()
    created = await world.create()
    world.connections.databases.clear()
    await world.run(created)
    last = world.core.state.streams[stream_name(created.table_id)][-1]
    assert last.event_type == "TableCreationRejected" and "no database named" in last.data["reason"]


async def test_adopting_normalizes_a_nullable_primary_key() -> None:
    """SQLite's ``id INTEGER PRIMARY KEY`` inspects as nullable; adopted, it is the key, never NULL."""
    world = World()
    created = await world.settled()
    world.byodb.tables["people"] = LiveTable(
        "people",
        (
            LiveColumn("id", ColumnType.INTEGER, "INTEGER", nullable=True, primary_key=True),
            LiveColumn("label", ColumnType.TEXT, "TEXT", nullable=True, primary_key=False),
        ),
    )
    adopt = await world.tables.reconcile(table_id=created.table_id, strategy="adopt", metadata={})
    await world.run(adopt)
    table = await world.table(created.table_id)
    assert [c.to_dict() for c in table.confirmed_columns.values()] == [
        Column("id", ColumnType.INTEGER, nullable=False, primary_key=True).to_dict(),
        Column("label", ColumnType.TEXT).to_dict(),
    ]
    # And a repair of it now finds nothing to do and verifies.
    repair = await world.tables.reconcile(table_id=created.table_id, strategy="repair", metadata={})
    await world.run(repair)
    assert world.events(created.table_id)[-1] == "TableChangeConfirmed"


async def test_an_unknown_table_is_not_found() -> None:
    world = World()
    with pytest.raises(TableNotFound):
        await world.tables.add_column(table_id=uuid4(), column=AGE, metadata={})
    # A job for an unknown table is ignored, not retried forever.
    await world.runner.run(table_id=uuid4(), operation_id=uuid4())
    assert world.core.events() == []


# -- changes queued behind a change that is rejected ------------------------------------------------


async def _reject(world: World, accepted: Accepted, reason: str = "refused") -> None:
    async def reject(session: Session) -> None:
        (await session.table(accepted.table_id)).reject(accepted.operation_id, reason=reason)

    await world.uow.run(reject, metadata={"actor": "test"})


async def test_a_change_planned_behind_a_rejected_rename_is_rejected_rather_than_run_off_plan() -> None:
    world = World()
    created = await world.settled()
    renamed = await world.tables.rename_table(table_id=created.table_id, name="persons", metadata={})
    added = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    table = await world.table(created.table_id)
    assert [op.plan.statements[0].sql for op in table.pending if op.plan] == [
        "-- rename_table persons",
        "-- add_column persons",  # planned on the name the rename will give
    ]
    await _reject(world, renamed)  # type: ignore[arg-type]
    await world.run(added)  # type: ignore[arg-type]

    table = await world.table(created.table_id)
    assert table.synced and "age" not in table.confirmed_columns
    assert world.events(created.table_id)[-1] == "TableChangeRejected"
    assert ("add_column", "people") not in world.byodb.calls  # no DDL ran
    reason = world.core.state.streams[stream_name(created.table_id)][-1].data["reason"]
    assert "plan it again" in reason and "-- add_column people" in reason


async def test_an_alteration_of_a_column_whose_addition_was_rejected_is_rejected_without_ddl() -> None:
    world = World()
    created = await world.settled()
    added = await world.tables.add_column(table_id=created.table_id, column=AGE, metadata={})
    altered = await world.tables.alter_column(
        table_id=created.table_id, name="age", patch=ColumnPatch(name="years"), metadata={}
    )
    await _reject(world, added)  # type: ignore[arg-type]
    calls = len(world.byodb.calls)
    await world.run(altered)  # type: ignore[arg-type]

    table = await world.table(created.table_id)
    assert table.synced and table.confirmed.column("years") is None
    assert world.events(created.table_id)[-1] == "TableChangeRejected"
    assert world.byodb.calls[calls:] == []  # not even an inspection


async def test_a_change_done_by_a_run_that_died_before_recording_it_is_confirmed_not_replanned() -> None:
    world = World()
    created = await world.settled()
    renamed = await world.tables.rename_table(table_id=created.table_id, name="persons", metadata={})
    # The rename ran, and its worker died before recording it: the table is already called persons.
    world.byodb.tables["persons"] = replace(world.byodb.tables.pop("people"), name="persons")
    calls = len(world.byodb.calls)
    await world.run(renamed)  # type: ignore[arg-type]

    table = await world.table(created.table_id)
    assert table.synced and table.physical_name == "persons"
    assert world.events(created.table_id)[-1] == "TableChangeConfirmed"
    # Found done: its plan is not written again (it could name indexes otherwise), the step finds nothing
    # to do, and the verification passes.
    assert [method for method, _ in world.byodb.calls[calls:]] == [
        "live_state",
        "apply_plan",
        "inspect_table",
    ]
