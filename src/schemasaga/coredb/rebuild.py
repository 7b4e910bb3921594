"""The online, resumable rebuild of the read models (``schemasaga projections rebuild``).

New read models are built beside the live ones (schema ``schemasaga_rebuild``), in batches of streams,
each batch its own transaction, while the service keeps serving from the live ones. A batch reads its
streams' events at once, projects them in memory (:func:`~schemasaga.coredb.readmodels.table_rows`: the
same rows the event-by-event projection leaves) and COPYs the rows in. The new tables get their keys and
indexes once every batch is in (built in one pass each, not kept up row by row). The streams that events
were appended to meanwhile (those of transactions at or above the horizon taken when the build began) are then
projected again, in rounds, until few are left; the last round runs in the swap's own transaction, which
locks the live read models (with a lock timeout, retried), carries over what no event says (an
operation's ``starts``, and that a worker is running it) and moves the new tables in their place.

The fold is :func:`~schemasaga.coredb.directfold.table_rows` over lean reads (only what it folds): the
common histories folded straight into rows, the others by the aggregate (``readmodels.fast_table_rows``),
and with ``workers`` > 1 each batch is split: ``workers - 1`` helper processes (spawned, each with its own
connection) read and fold their part while this one folds its own; this one COPYs every part in the
batch's transaction, so a batch is still all or nothing. The reads run a batch ahead: this process's part
of the next batch is read on a connection of its own, and the helpers fold their parts of it, while this
process folds and COPYs the current one. A read ahead or a helper's read is in a snapshot of its own,
later than the horizon: what it sees beyond it was appended after the horizon and is projected again by
the catch-up.
``fold="domain"`` is the path before (every event parsed whole and folded by the aggregate), kept as the
baseline of ``bench/rebuild.py``.

A session advisory lock keeps a second rebuild out. After a kill, running it again resumes after the last
committed batch (``schemasaga_rebuild.progress``); the events appended in between are caught up as above.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.errors import LockNotAvailable

from schemasaga.coredb import directfold, readmodels
from schemasaga.eventstore import EventStore, LeanEvent, RecordedEvent, Upcasters, lean_events
from schemasaga.faults import kill_point
from schemasaga.sql import queries

log = logging.getLogger(__name__)
Q = queries("rebuild")
EVENTSTORE_Q = queries("eventstore")

TABLE_PREFIX = "Table$"
DATABASE_PREFIX = "Database$"


class RebuildRunning(Exception):
    """Another rebuild holds the lock."""


@dataclass(frozen=True, slots=True)
class Progress:
    phase: str  # "build", "catch-up", "swap", "done"
    streams_done: int
    streams_total: int
    events: int
    # Events projected by this process (not those of batches committed before a resume), and for how long.
    events_here: int
    seconds: float
    resumed_at: int = 0

    @property
    def rate(self) -> float:
        return self.events_here / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    tables: int
    databases: int
    events: int
    resumed_at: int
    caught_up_streams: int
    seconds: float


Report = Callable[[Progress], None]


class OnlineRebuild:
    """One run. ``conninfo``: the core database (the rebuild opens its own connections: one holds the
    advisory lock for the whole run, one does the work)."""

    def __init__(
        self,
        conninfo: str,
        store: EventStore,
        *,
        batch_size: int = 1000,
        lock_timeout: float = 2.0,
        swap_attempts: int = 30,
        catch_up_rounds: int = 10,
        report: Report | None = None,
        workers: int = 1,
        fold: str = "fast",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if fold not in ("fast", "domain"):
            raise ValueError("fold is 'fast' or 'domain'")
        self.workers = workers
        self.fold = fold
        self.conninfo = conninfo
        self.store = store
        self.batch_size = batch_size
        self.lock_timeout = lock_timeout
        self.swap_attempts = swap_attempts
        self.catch_up_rounds = catch_up_rounds
        self.report = report or (lambda _: None)
        self._started = time.monotonic()
        self._events_here = 0  # projected by this process
        self._events = 0  # projected by this build, batches of an earlier process included
        self._done = self._total = self._resumed_at = 0
        self._caught_up = 0  # streams projected again because events were appended to them meanwhile
        self._types: dict[str, dict[str, str]] | None = None  # the new read models' column types, by table

    async def run(self) -> Outcome:
        async with await AsyncConnection.connect(self.conninfo, autocommit=True) as holder:
            row = await (await holder.execute(Q["try_lock"])).fetchone()
            if not row or not row[0]:
                raise RebuildRunning("another `projections rebuild` is running on this core database")
            try:
                async with await AsyncConnection.connect(self.conninfo) as conn:
                    await conn.execute(Q["serial_reads"])
                    await conn.commit()
                    return await self._run(conn)
            finally:
                await holder.execute(Q["unlock"])

    async def _run(self, conn: AsyncConnection[Any]) -> Outcome:
        await self._prepare(conn)
        await self._build(conn)
        for _ in range(self.catch_up_rounds):
            async with conn.transaction():
                changed = await self._catch_up(conn)
            self._tell("catch-up")
            if changed < max(10, self.batch_size // 10):
                break
        async with conn.transaction():
            await conn.execute(Q["analyze_shadow"])
        await self._swap(conn)
        self._done = self._total
        async with conn.transaction():
            counts = await (await conn.execute(Q["counts"])).fetchone()
        self._tell("done")
        return Outcome(
            tables=int(counts[0]) if counts else 0,
            databases=int(counts[1]) if counts else 0,
            events=self._events,
            resumed_at=self._resumed_at,
            caught_up_streams=self._caught_up,
            seconds=time.monotonic() - self._started,
        )

    # -- phases ----------------------------------------------------------------------------------

    async def _prepare(self, conn: AsyncConnection[Any]) -> None:
        """Start a new build, or take up the stopped one where its last batch ended."""
        async with conn.transaction():
            exists = await (await conn.execute(Q["shadow_exists"])).fetchone()
            row = await (await conn.execute(Q["progress"])).fetchone() if exists and exists[0] else None
            if row is None:
                await conn.execute(Q["create_shadow"])
                # The horizon before the list: a stream the list does not see has events at or above it.
                horizon = await self._horizon(conn)
                await conn.execute(Q["list_streams"], {})
                await conn.execute(Q["start_progress"], {"horizon": horizon})
                row = await (await conn.execute(Q["progress"])).fetchone()
                assert row is not None
            else:
                log.info("resuming the rebuild after %d of %d streams", row[1], row[2])
                self._resumed_at = int(row[1])
        self._done, self._total, self._events = int(row[1]), int(row[2]), int(row[3])

    async def _build(self, conn: AsyncConnection[Any]) -> None:
        """The batches, each its own transaction; then the new read models' keys and indexes.

        The fast fold reads a batch ahead: the events of batch N + 1 are read (on a connection of their
        own, in its own snapshot, as a helper reads) and the helpers' parts of it folded while this process
        folds and COPYs batch N, so that the server's reading overlaps this process's folding."""
        with _without_gc():
            await self._build_batches(conn)
        async with conn.transaction():
            await conn.execute(Q["index_shadow"])

    async def _build_batches(self, conn: AsyncConnection[Any]) -> None:
        if self.fold == "domain":
            await self._build_domain(conn)
        else:
            helpers = self._helpers()
            readers: list[AsyncConnection[Any]] = []
            ahead: _Ahead | None = None
            try:
                for _ in range(_READERS):
                    readers.append(reader := await AsyncConnection.connect(self.conninfo, autocommit=True))
                    await reader.execute(Q["serial_reads"])
                    await reader.execute(Q["ordered_reads"])
                async with conn.transaction():
                    batch = await self._next_streams(conn, self._done)
                ahead = self._read_ahead(batch, readers, helpers) if batch else None
                while ahead is not None:
                    async with conn.transaction():
                        mine = await ahead.mine
                        following = await self._next_streams(conn, int(batch[-1][0]))
                        current, ahead = ahead, None
                        if following:
                            ahead = self._read_ahead(following, readers, helpers)
                        count = await self._project_ahead(conn, mine, current)
                        await conn.execute(Q["batch_done"], {"done": batch[-1][0], "events": count})
                    self._done = int(batch[-1][0])
                    self._count(count)
                    kill_point("rebuild", "after_batch")
                    self._tell("build")
                    batch = following
            finally:
                if ahead is not None:
                    ahead.cancel()
                if helpers is not None:
                    helpers.shutdown(cancel_futures=True)
                for reader in readers:
                    await reader.close()

    async def _build_domain(self, conn: AsyncConnection[Any]) -> None:
        while True:
            async with conn.transaction():
                batch = await self._next_streams(conn, self._done)
                if not batch:
                    return
                count = await self._project_domain(conn, [s for _, s in batch])
                await conn.execute(Q["batch_done"], {"done": batch[-1][0], "events": count})
            self._done = int(batch[-1][0])
            self._count(count)
            kill_point("rebuild", "after_batch")
            self._tell("build")

    async def _next_streams(self, conn: AsyncConnection[Any], after: int) -> list[tuple[int, str]]:
        """The next batch's streams, as (n, stream): those after ``after`` in the build's list."""
        params = {"after": after, "limit": self.batch_size}
        return [(int(n), str(s)) for n, s in await (await conn.execute(Q["next_streams"], params)).fetchall()]

    def _read_ahead(
        self,
        batch: Sequence[tuple[int, str]],
        readers: list[AsyncConnection[Any]],
        helpers: ProcessPoolExecutor | None,
    ) -> _Ahead:
        """Start reading ``batch`` (this process's part split over ``readers``, each a backend of its own)
        and folding the helpers' parts."""
        parts = _split([s for _, s in batch], self.workers if helpers is not None else 1)
        loop = asyncio.get_running_loop()
        theirs = [loop.run_in_executor(helpers, _helper_project, part) for part in parts[1:]]
        reads = [
            self.store.read_streams_lean(part, conn=reader)
            for part, reader in zip(_split(parts[0], len(readers)), readers, strict=False)
        ]
        return _Ahead(asyncio.ensure_future(_concat(reads)), theirs)

    def _helpers(self) -> ProcessPoolExecutor | None:
        """The helper processes of the build (None with one worker, or when the store's upcasters cannot
        be sent to another process)."""
        if self.workers < 2 or self.fold != "fast":
            return None
        try:
            pickle.dumps(self.store.upcasters)
        except (pickle.PicklingError, AttributeError, TypeError):
            log.warning("the store's upcasters cannot go to another process: the rebuild uses one")
            return None
        return ProcessPoolExecutor(
            self.workers - 1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_helper_start,
            initargs=(self.conninfo, self.store.upcasters),
        )

    async def _catch_up(self, conn: AsyncConnection[Any]) -> int:
        """Project again the streams events were appended to since the horizon (in the caller's
        transaction); how many."""
        row = await (await conn.execute(Q["progress"])).fetchone()
        assert row is not None
        horizon = await self._horizon(conn)
        found = await (await conn.execute(Q["changed_streams"], {"since": int(row[0])})).fetchall()
        changed = [str(r[0]) for r in found]
        ids = [UUID(s.removeprefix(TABLE_PREFIX)) for s in changed if s.startswith(TABLE_PREFIX)]
        names = [s.removeprefix(DATABASE_PREFIX) for s in changed if s.startswith(DATABASE_PREFIX)]
        if ids:
            await conn.execute(Q["forget_tables"], {"ids": ids})
            await conn.execute(Q["forget_operations"], {"ids": ids})
            await conn.execute(Q["forget_trash"], {"ids": ids})
        if names:
            await conn.execute(Q["forget_databases"], {"names": names})
        # In this process only: the swap's last round must read in its own (locked) snapshot.
        count = await self._project(conn, changed) if changed else 0
        await conn.execute(Q["caught_up"], {"horizon": horizon, "events": count})
        self._count(count)
        self._caught_up += len(changed)
        return len(changed)

    async def _swap(self, conn: AsyncConnection[Any]) -> None:
        """Lock the live read models, catch up the last events, swap; retried while the lock is held."""
        timeout = f"{int(self.lock_timeout * 1000)}ms"
        for attempt in range(1, self.swap_attempts + 1):
            self._tell("swap")
            try:
                async with conn.transaction():
                    await conn.execute(Q["lock_timeout"], {"timeout": timeout})
                    await conn.execute(Q["lock_live"])
                    await conn.execute(Q["lock_timeout"], {"timeout": "0"})
                    await self._catch_up(conn)
                    kill_point("rebuild", "before_swap")
                    await conn.execute(Q["swap_in"])
                return
            except LockNotAvailable:
                log.info(
                    "the read models are busy (swap attempt %d): catching up, then trying again", attempt
                )
                await asyncio.sleep(min(0.1 * attempt, 2.0))
                async with conn.transaction():
                    await self._catch_up(conn)
        raise RebuildStalled(
            f"the live read models stayed locked through {self.swap_attempts} attempts to swap; the new ones "
            "are kept: run the rebuild again to finish it"
        )

    # -- helpers ---------------------------------------------------------------------------------

    async def _horizon(self, conn: AsyncConnection[Any]) -> int:
        row = await (await conn.execute(Q["horizon"])).fetchone()
        assert row is not None
        return int(row[0])

    async def _project(self, conn: AsyncConnection[Any], streams: Sequence[str]) -> int:
        """Project the streams into the new read models, reading them in ``conn``'s transaction; the number
        of events read."""
        if self.fold == "domain":
            return await self._project_domain(conn, streams)
        return await self._project_lean(conn, await self.store.read_streams_lean(streams, conn=conn), [])

    async def _project_ahead(self, conn: AsyncConnection[Any], mine: list[LeanEvent], ahead: _Ahead) -> int:
        try:
            return await self._project_lean(conn, mine, ahead.theirs)
        finally:
            ahead.cancel()

    async def _project_lean(
        self, conn: AsyncConnection[Any], events: list[LeanEvent], helped: Sequence[asyncio.Future[Rows]]
    ) -> int:
        """Fold ``events`` (this process's part; the event loop gets a turn now and then, for the batch
        read ahead) and COPY their rows with those of the helpers' parts."""
        mine = Rows([], [], [], [], 0)
        for chunk in _chunks(events, _FOLD_CHUNK):
            mine.extend(_fold_lean(chunk))
            await asyncio.sleep(0)
        theirs = await asyncio.gather(*helped)
        rows = Rows([], [], [], [], 0)
        database_streams: list[str] = []
        for part in (mine, *theirs):
            rows.tables.extend(part.tables)
            rows.operations.extend(part.operations)
            rows.trash.extend(part.trash)
            database_streams.extend(part.databases)
            rows.events += part.events
        # The registrations: few, folded here from whole events (database_row reads them).
        if database_streams:
            for _, stream_events in _by_stream(await self.store.read_streams(database_streams, conn=conn)):
                if (row := readmodels.database_row(stream_events)) is not None:
                    rows.databases.append(row)
        await self._copy_rows(conn, rows)
        return rows.events

    async def _project_domain(self, conn: AsyncConnection[Any], streams: Sequence[str]) -> int:
        """The path before the fast fold: whole events, each folded by the aggregate."""
        events = await self.store.read_streams(streams, conn=conn)
        rows = Rows([], [], [], [], len(events))
        for stream, stream_events in _by_stream(events):
            if stream.startswith(TABLE_PREFIX):
                table, ops, entries = readmodels.table_rows(stream_events)
                rows.tables.append(table)
                rows.operations.extend(ops)
                rows.trash.extend(entries)
            elif (row := readmodels.database_row(stream_events)) is not None:
                rows.databases.append(row)
        await self._copy_rows(conn, rows)
        return rows.events

    async def _copy_rows(self, conn: AsyncConnection[Any], rows: Rows) -> None:
        if self._types is None:
            self._types = {}
            for table, column, type_ in await (await conn.execute(Q["shadow_column_types"])).fetchall():
                self._types.setdefault(str(table), {})[str(column)] = str(type_)
        for table, columns, table_rows in (
            ("rm_tables", readmodels.TABLE_COLUMNS, rows.tables),
            ("rm_operations", readmodels.OPERATION_COLUMNS, rows.operations),
            ("rm_trash", readmodels.TRASH_COLUMNS, rows.trash),
            ("rm_databases", readmodels.DATABASE_COLUMNS, rows.databases),
        ):
            await _copy(conn, table, columns, table_rows, self._types[table])

    def _count(self, events: int) -> None:
        self._events += events
        self._events_here += events

    def _tell(self, phase: str) -> None:
        self.report(
            Progress(
                phase=phase,
                streams_done=self._done,
                streams_total=self._total,
                events=self._events,
                events_here=self._events_here,
                seconds=time.monotonic() - self._started,
                resumed_at=self._resumed_at,
            )
        )


class RebuildStalled(Exception):
    """The swap could not get its lock; the built read models are kept for the next run."""


@dataclass(slots=True)
class Rows:
    """A batch's rows for the new read models (``databases``: rows, or from a fold of lean events the
    names of the database streams met, which are folded from whole events), and its events read."""

    tables: list[tuple[Any, ...]]
    operations: list[tuple[Any, ...]]
    trash: list[tuple[Any, ...]]
    databases: list[Any]
    events: int

    def extend(self, other: Rows) -> None:
        self.tables.extend(other.tables)
        self.operations.extend(other.operations)
        self.trash.extend(other.trash)
        self.databases.extend(other.databases)
        self.events += other.events


@dataclass(slots=True)
class _Ahead:
    """A batch being read ahead: this process's part (its events, read on the reader connection) and the
    helpers' parts (their rows)."""

    mine: asyncio.Future[list[LeanEvent]]
    theirs: list[asyncio.Future[Rows]]

    def cancel(self) -> None:
        self.mine.cancel()
        for future in self.theirs:
            future.cancel()


# Streams folded between two turns of the event loop (a few milliseconds).
_FOLD_CHUNK = 50
# Connections reading ahead, each a part of this process's share of the next batch: a batch's read is one
# backend's work (the links' index, an event looked up by id for each, its data turned into text), which
# took longer than this process's fold and COPY of the batch before.
_READERS = 2


async def _concat(reads: Sequence[Awaitable[list[LeanEvent]]]) -> list[LeanEvent]:
    """The events of ``reads`` (run at once), in their order."""
    events: list[LeanEvent] = []
    for part in await asyncio.gather(*reads):
        events.extend(part)
    return events


@contextmanager
def _without_gc() -> Iterator[None]:
    """The cyclic garbage collector off (in the whole process) for the build. A batch allocates about ten
    objects an event (rows, parsed data), all alive until its COPY: the collector, run every 700
    allocations, walked them again and again, and took a third of the build's time in this process. What
    the build allocates is freed by reference counting (a whole build leaves a few dozen objects in
    cycles); the collector is on again after it, as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _split(streams: list[str], parts: int) -> list[list[str]]:
    """``streams`` in ``parts`` runs of (nearly) equal length, the first the longest."""
    if parts < 2 or len(streams) < 2:
        return [streams]
    size = -(-len(streams) // parts)
    return [streams[i : i + size] for i in range(0, len(streams), size)]


def _chunks(events: list[LeanEvent], streams: int) -> list[list[LeanEvent]]:
    """``events`` cut into runs of ``streams`` whole streams each."""
    chunks: list[list[LeanEvent]] = []
    start = seen = 0
    for i in range(1, len(events) + 1):
        if i < len(events) and events[i][0] == events[i - 1][0]:
            continue
        seen += 1
        if seen == streams or i == len(events):
            chunks.append(events[start:i])
            start, seen = i, 0
    return chunks


def _fold_lean(events: list[LeanEvent]) -> Rows:
    rows = Rows([], [], [], [], len(events))
    uuids: dict[str, UUID] = {}
    start = 0
    for i in range(1, len(events) + 1):
        if i < len(events) and events[i][0] == events[start][0]:
            continue
        stream = events[start][0]
        if stream.startswith(TABLE_PREFIX):
            table, ops, entries = directfold.table_rows(events[start:i], uuids)
            rows.tables.append(table)
            rows.operations.extend(ops)
            rows.trash.extend(entries)
        else:
            rows.databases.append(stream)
        start = i
    return rows


# -- the helper processes (module level: they are spawned, and import this module) ---------------------

_helper: tuple[psycopg.Connection[Any], Upcasters] | None = None


def _helper_start(conninfo: str, upcasters: Upcasters) -> None:
    global _helper
    gc.disable()  # as in the main process's build (_without_gc): the helper lives only for the build
    _helper = (psycopg.Connection.connect(conninfo, autocommit=True), upcasters)
    _helper[0].execute(Q["serial_reads"])
    _helper[0].execute(Q["ordered_reads"])
    parent = os.getppid()

    def orphaned() -> None:  # the rebuild was killed: a helper waiting for work would wait for ever
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, name="rebuild-helper-watch", daemon=True).start()


def _helper_project(streams: list[str]) -> Rows:
    """Read (in its own snapshot) and fold ``streams``: the rows, for the main process to COPY."""
    assert _helper is not None
    conn, upcasters = _helper
    rows = conn.execute(EVENTSTORE_Q["read_streams_lean"], {"streams": streams}).fetchall()
    return _fold_lean(lean_events(rows, upcasters))


def _by_stream(events: list[RecordedEvent]) -> list[tuple[str, list[RecordedEvent]]]:
    groups: list[tuple[str, list[RecordedEvent]]] = []
    for event in events:
        assert event.stream is not None
        if not groups or groups[-1][0] != event.stream:
            groups.append((event.stream, []))
        groups[-1][1].append(event)
    return groups


# jsonb's binary form: this version byte, then the JSON text.
_JSONB_VERSION = b"\x01"


async def _copy(
    conn: AsyncConnection[Any],
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    types: dict[str, str],
) -> None:
    """COPY ``rows`` in, in the binary format (a third less of this process's time than the text format, and
    less of PostgreSQL's); ``types``: the table's column types."""
    if not rows:
        return
    # Our own table and column names (never user text), composed as identifiers.
    statement = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier("schemasaga_rebuild"),
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )
    # The rows' JSON columns come as JSON text: sent as bytes, after jsonb's version byte.
    jsonb = [i for i, c in enumerate(columns) if types[c] == "jsonb"]
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["bytea" if types[c] == "jsonb" else types[c] for c in columns])
        for row in rows:
            if jsonb:
                values = list(row)
                for i in jsonb:
                    values[i] = _JSONB_VERSION + values[i].encode()
                await copy.write_row(values)
            else:
                await copy.write_row(row)
