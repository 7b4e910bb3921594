"""The event store on PostgreSQL (psycopg 3, async): append, link, read, follow, snapshots.

Every operation is one statement, so one round trip: on a pool connection it runs in autocommit mode
(its own transaction, commit included); on the caller's connection it joins the caller's transaction.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from schemasaga.eventstore.events import (
    ANY,
    NO_STREAM,
    START,
    Checkpoint,
    EventDuplicated,
    EventNotFound,
    EventStoreError,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    WrongExpectedVersion,
)
from schemasaga.eventstore.jsoncodec import dumps, dumps_event, loads
from schemasaga.eventstore.upcasting import Upcasters
from schemasaga.sql import queries

Conn = psycopg.AsyncConnection[Any]
Row = tuple[Any, ...]
# (stream, event_type, data, created_at, position): an event as the online rebuild folds it.
LeanEvent = tuple[str, str, dict[str, Any], datetime, int]

_MAX_VERSION: Final = 2**31 - 1
_MAX_POSITION: Final = 2**63 - 1

# Unique constraints whose violation means a conflict rather than a bug.
_STREAM_VERSION_KEY: Final = "event_store_events_in_streams_pkey"
_EVENT_ID_KEY: Final = "event_store_events_event_id_key"
_STREAM_EVENT_KEY: Final = "event_store_events_in_streams_event_stream_key"


class EventStore:
    """Append-only event store with named streams, expected versions and a global log.

    Every method taking ``conn`` runs on that connection, inside the caller's transaction, and never
    commits it; without ``conn`` it takes a connection from the pool and commits.
    """

    def __init__(self, pool: AsyncConnectionPool[Any], *, upcasters: Upcasters | None = None) -> None:
        self._pool = pool
        self._upcasters = upcasters or Upcasters()
        self._q = queries("eventstore")
        self._cursors = _KeptCursors()

    # Writing -----------------------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion = ANY,
        conn: Conn | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` to ``stream`` atomically; raises WrongExpectedVersion, writing nothing, when
        the stream is not at ``expected_version`` (and EventDuplicated for an event id stored already)."""
        expected = _check_expected(expected_version)
        if not events:
            actual = await self.stream_version(stream, conn=conn)
            if expected is not None and actual != expected:
                raise WrongExpectedVersion(stream, expected_version, actual)
            return []
        now = datetime.now(UTC).isoformat()
        if len(events) == 1:  # the common case, without arrays (append_event)
            event = events[0]
            data = dumps_event(event.data)
            metadata = dumps_event(_with_defaults(event, now))
            params = {
                "stream": stream,
                "expected": expected,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "schema_version": event.schema_version,
                "data": data,
                "metadata": metadata,
                "valid_at": event.valid_at,
            }
            head, position, created_at = (
                await self._write(stream, self._q["append_event"], params, expected_version, conn)
            )[0]
            if position is None:
                raise WrongExpectedVersion(stream, expected_version, head)
            # The event as a read returns it: its documents parsed back from the text stored (one call).
            data_doc, metadata_doc = loads(f"[{data},{metadata}]")
            return [
                RecordedEvent(
                    event.event_id,
                    event.event_type,
                    data_doc,
                    metadata_doc,
                    event.schema_version,
                    position,
                    created_at,
                    event.valid_at,
                    stream,
                    head + 1,
                )
            ]
        data_json = [dumps_event(e.data) for e in events]
        meta_json = [dumps_event(_with_defaults(e, now)) for e in events]
        batch: dict[str, Any] = {
            "stream": stream,
            "expected": expected,
            "event_ids": [e.event_id for e in events],
            "event_types": [e.event_type for e in events],
            "schema_versions": [e.schema_version for e in events],
            "data": data_json,
            "metadata": meta_json,
            "valid_ats": [e.valid_at for e in events],
        }
        rows = await self._write(stream, self._q["append_events"], batch, expected_version, conn)
        head = rows[0][0]
        if rows[0][1] is None:
            raise WrongExpectedVersion(stream, expected_version, head)
        texts = [text for pair in zip(data_json, meta_json, strict=True) for text in pair]
        docs = loads("[" + ",".join(texts) + "]")
        return [
            RecordedEvent(
                e.event_id,
                e.event_type,
                docs[2 * i],
                docs[2 * i + 1],
                e.schema_version,
                position,
                created_at,
                e.valid_at,
                stream,
                head + i + 1,
            )
            for i, (e, (_, position, created_at)) in enumerate(zip(events, rows, strict=True))
        ]

    async def link(
        self,
        stream: str,
        event_ids: Sequence[UUID],
        *,
        expected_version: ExpectedVersion = ANY,
        conn: Conn | None = None,
    ) -> None:
        """Add stored events to ``stream`` (they stay in their own streams), with the same version check
        as append; raises EventNotFound for an unknown id and EventDuplicated for one linked already."""
        expected = _check_expected(expected_version)
        params = {"stream": stream, "expected": expected, "event_ids": list(event_ids)}
        head, missing, present, _ = (
            await self._write(stream, self._q["link_events"], params, expected_version, conn)
        )[0]
        if missing is not None:
            raise EventNotFound(missing)
        if present is not None:
            raise EventDuplicated(f"event {present} is in stream {stream!r} already")
        if expected is not None and head != expected:
            raise WrongExpectedVersion(stream, expected_version, head)

    async def save_snapshot(
        self, stream: str, version: int, state: Mapping[str, Any], *, conn: Conn | None = None
    ) -> None:
        """Store the state of ``stream`` as of ``version`` (replacing a snapshot of that version)."""
        params = {"stream": stream, "version": version, "state": dumps(state)}
        await self._run(self._q["save_snapshot"], params, conn=conn)

    # Reading -----------------------------------------------------------------------------------

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        backward: bool = False,
        limit: int | None = None,
        until: datetime | None = None,
        conn: Conn | None = None,
    ) -> list[RecordedEvent]:
        """The events of ``stream`` with versions in [from_version, to_version], in version order (newest
        first when ``backward``); with ``until``, as the stream was at that moment.

        An event is read at ``until`` when it joined the stream at or before ``until``, or when another
        event that the same transaction added to the stream did: a moment inside a transaction sees all
        of it, as readers did, never a part of it.
        """
        last = _MAX_VERSION if to_version is None else to_version
        if until is not None:
            cut = await self._run(self._q["stream_cut"], {"stream": stream, "until": until}, conn=conn)
            at_cut = cut[0][0] if cut else None
            if at_cut is None:  # nothing had joined the stream by then
                return []
            last = min(last, at_cut)
        params = {
            "stream": stream,
            "from_version": 0 if from_version is None else from_version,
            "to_version": last,
            "limit": limit,
        }
        query = self._q["read_stream_backward" if backward else "read_stream_forward"]
        rows = await self._run(query, params, conn=conn)
        return self._events(rows, stream)

    async def read_streams(self, streams: Sequence[str], *, conn: Conn | None = None) -> list[RecordedEvent]:
        """Every event of ``streams``, stream by stream (in the order of their names), each in version
        order; each event carries its stream, version and transaction id."""
        rows = await self._run(self._q["read_streams"], {"streams": list(streams)}, conn=conn)
        return self._events(rows, None, followed=True)

    @property
    def upcasters(self) -> Upcasters:
        return self._upcasters

    async def read_streams_lean(self, streams: Sequence[str], *, conn: Conn | None = None) -> list[LeanEvent]:
        """The events :meth:`read_streams` reads, as ``(stream, event_type, data, created_at, position)``
        (upcast like every read): what a projection folds, without metadata, ids or the transaction; the
        data of the whole batch parsed at once."""
        rows = await self._run(self._q["read_streams_lean"], {"streams": list(streams)}, conn=conn)
        return lean_events(rows, self._upcasters)

    async def read_streams_from(
        self, from_versions: Mapping[str, int], *, conn: Conn | None = None
    ) -> list[RecordedEvent]:
        """The events of each stream of ``from_versions`` from its version on, stream by stream (in the
        order of their names), each in version order, with its stream, version and transaction id."""
        streams = list(from_versions)
        params = {"streams": streams, "froms": [from_versions[s] for s in streams]}
        rows = await self._run(self._q["read_streams_from"], params, conn=conn)
        return self._events(rows, None, followed=True)

    async def latest_snapshots(
        self, streams: Sequence[str], *, conn: Conn | None = None
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        """The newest snapshot of each of ``streams`` that has one, as (version, state)."""
        rows = await self._run(self._q["latest_snapshots"], {"streams": list(streams)}, conn=conn)
        return {str(r[0]): (int(r[1]), r[2]) for r in rows}

    async def read_streams_until(
        self, streams: Sequence[str], *, until: datetime, conn: Conn | None = None
    ) -> dict[str, list[RecordedEvent]]:
        """Each of ``streams`` as :meth:`read_stream` with ``until`` reads it (whole transactions only),
        in one round trip; a stream with nothing by then is left out."""
        rows = await self._run(
            self._q["read_streams_until"], {"streams": list(streams), "until": until}, conn=conn
        )
        grouped: dict[str, list[Row]] = {}
        for row in rows:
            grouped.setdefault(row[9], []).append(row)
        return {stream: self._events(group, stream) for stream, group in grouped.items()}

    async def read_all(
        self,
        *,
        after_position: int | None = None,
        to_position: int | None = None,
        backward: bool = False,
        limit: int | None = None,
        event_types: Sequence[str] | None = None,
        newer_than: datetime | None = None,
        older_than: datetime | None = None,
        correlation_id: str | None = None,
        stream: str | None = None,
        conn: Conn | None = None,
    ) -> list[RecordedEvent]:
        """Events of the global log with after_position < position <= to_position, in position order
        (newest first when ``backward``), filtered by type, created_at (exclusive bounds), correlation id
        and stream membership. With ``stream``, each event carries its version in that stream.

        The log is read in position order, which is not commit order: a reader that must not miss
        events committed late uses ``follow``.
        """
        params = {
            "after": -1 if after_position is None else after_position,
            "to": _MAX_POSITION if to_position is None else to_position,
            "limit": limit,
            "event_types": None if event_types is None else list(event_types),
            "newer_than": newer_than,
            "older_than": older_than,
            "correlation_id": correlation_id,
            "stream": stream,
        }
        query = self._q["read_all_backward" if backward else "read_all_forward"]
        # Unprepared: planned with the actual values, so the unused filters fold away and the used ones
        # can pick their index.
        rows = await self._run(query, params, conn=conn, prepare=False)
        return self._events(rows, stream)

    async def read_batches(
        self,
        *,
        batch_size: int = 1000,
        after_position: int | None = None,
        to_position: int | None = None,
        backward: bool = False,
        event_types: Sequence[str] | None = None,
        newer_than: datetime | None = None,
        older_than: datetime | None = None,
        correlation_id: str | None = None,
        stream: str | None = None,
        conn: Conn | None = None,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """``read_all`` in batches of at most ``batch_size``, each starting where the last one ended
        (keyset pagination on position)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        after, to = after_position, to_position
        while True:
            batch = await self.read_all(
                after_position=after,
                to_position=to,
                backward=backward,
                limit=batch_size,
                event_types=event_types,
                newer_than=newer_than,
                older_than=older_than,
                correlation_id=correlation_id,
                stream=stream,
                conn=conn,
            )
            if batch:
                yield batch
            if len(batch) < batch_size:
                return
            if backward:
                to = batch[-1].position - 1
            else:
                after = batch[-1].position

    async def get(self, event_id: UUID, *, conn: Conn | None = None) -> RecordedEvent:
        """The event with this id; raises EventNotFound."""
        rows = await self._run(self._q["get_event"], {"event_id": event_id}, conn=conn)
        if not rows:
            raise EventNotFound(event_id)
        return self._events(rows, None)[0]

    async def lock_stream(self, stream: str, *, conn: Conn) -> None:
        """Take the lock every write to ``stream`` takes, until the end of the caller's transaction: a
        writer that reads the stream to decide what to append (load, decide, append) then waits for
        the writers before it, instead of losing the expected-version check and deciding again."""
        await conn.execute(self._q["lock_stream"], {"stream": stream})

    async def stream_version(self, stream: str, *, conn: Conn | None = None) -> int:
        """The version of the stream's last event; -1 when the stream does not exist."""
        rows = await self._run(self._q["stream_version"], {"stream": stream}, conn=conn)
        return int(rows[0][0])

    async def streams_of(self, event_id: UUID, *, conn: Conn | None = None) -> list[str]:
        """The streams the event belongs to, in the order it joined them."""
        rows = await self._run(self._q["streams_of"], {"event_id": event_id}, conn=conn)
        return [r[0] for r in rows]

    async def load_snapshot(
        self, stream: str, *, max_version: int | None = None, conn: Conn | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """The newest snapshot of ``stream`` at or below ``max_version``, as (version, state)."""
        params = {"stream": stream, "max_version": _MAX_VERSION if max_version is None else max_version}
        rows = await self._run(self._q["load_snapshot"], params, conn=conn)
        if not rows:
            return None
        return int(rows[0][0]), rows[0][1]

    # Following the global log ------------------------------------------------------------------

    async def follow(
        self, *, after: Checkpoint | None = None, poll_interval: float = 0.2, batch_size: int = 1000
    ) -> AsyncIterator[RecordedEvent]:
        """Every event of the global log after ``after``, endlessly, in (tx_id, position) order.

        Only events of transactions older than the oldest one still running are read, so an event whose
        transaction commits after a later-numbered one is never skipped; each yielded event carries the
        checkpoint to resume from (``event.checkpoint``). A long-running writing transaction anywhere on
        the server holds the follower back until it ends.
        """
        checkpoint = after or START
        await self._refuse_foreign_tx_ids()
        query = self._q["follow"]
        while True:
            params = {"tx_id": checkpoint.tx_id, "position": checkpoint.position, "limit": batch_size}
            rows = await self._run(query, params, conn=None)
            for event in self._events(rows, None, followed=True):
                checkpoint = event.checkpoint
                yield event
            if len(rows) < batch_size:
                await asyncio.sleep(poll_interval)

    async def read_committed(self, *, after: Checkpoint, limit: int) -> list[RecordedEvent]:
        """One batch of :meth:`follow`: at most ``limit`` events after ``after`` in (tx_id, position)
        order, of transactions below the horizon only (a page of the global log that no late commit can
        slip in front of)."""
        params = {"tx_id": after.tx_id, "position": after.position, "limit": limit}
        rows = await self._run(self._q["follow"], params, conn=None)
        return self._events(rows, None, followed=True)

    async def checkpoint_of(self, event_id: UUID) -> Checkpoint | None:
        """The follower checkpoint just after the event ``event_id`` (None when there is no such event)."""
        rows = await self._run(self._q["checkpoint_of"], {"event_id": event_id}, conn=None)
        return Checkpoint(tx_id=rows[0][0], position=rows[0][1]) if rows else None

    async def current_checkpoint(self) -> Checkpoint:
        """The checkpoint after the last event a follower could read now: following from it yields only
        events appended later (or committed later)."""
        rows = await self._run(self._q["follow_head"], {}, conn=None)
        if not rows:
            return START
        return Checkpoint(tx_id=rows[0][0], position=rows[0][1])

    async def _refuse_foreign_tx_ids(self) -> None:
        rows = await self._run(self._q["future_tx_ids"], {}, conn=None)
        if rows[0][0]:
            raise EventStoreError(
                "event_store_events holds transaction ids this server has not reached yet (the events were"
                " copied from another cluster): following by tx_id would stall on them and skip new events;"
                " renumber tx_id of the copied events (e.g. to '1'::xid8, keeping position order) first"
            )

    # Internals ---------------------------------------------------------------------------------

    def _events(self, rows: list[Row], stream: str | None, *, followed: bool = False) -> list[RecordedEvent]:
        """RecordedEvents from read rows; the data and metadata of the whole batch are parsed at once."""
        if not rows:
            return []
        docs = loads("[" + ",".join([text for row in rows for text in (row[4], row[5])]) + "]")
        upcasters = self._upcasters
        events = []
        for i, row in enumerate(rows):
            event_type, schema_version, data = row[2], row[3], docs[2 * i]
            if upcasters.handles(event_type):
                schema_version, data = upcasters.upcast(event_type, schema_version, data)
            events.append(
                RecordedEvent(
                    row[1],
                    event_type,
                    data,
                    docs[2 * i + 1],
                    schema_version,
                    row[0],
                    row[6],
                    row[7],
                    row[10] if followed else stream,
                    row[8],
                    row[9] if followed else None,
                )
            )
        return events

    async def _write(
        self, stream: str, query: str, params: Mapping[str, Any], expected: ExpectedVersion, conn: Conn | None
    ) -> list[Row]:
        """Run a write statement (which takes the stream's lock itself) and translate conflicts."""
        try:
            if conn is not None:
                return await self._write_on(conn, stream, query, params, expected)
            try:
                # Autocommit: the statement is its own transaction, one round trip with its commit.
                return await self._run(query, params, conn=None, small=True)
            except pg_errors.UniqueViolation as exc:
                if expected != ANY or exc.diag.constraint_name != _STREAM_VERSION_KEY:
                    raise
            # An ANY write that waited for the stream's lock read the stream before the other writer
            # committed; nothing was written. Again, the lock first so the write sees the winner.
            async with self._pool.connection() as own, own.transaction():
                await self.lock_stream(stream, conn=own)
                return await _fetch(own, query, params)
        except pg_errors.UniqueViolation as exc:
            constraint = exc.diag.constraint_name
            if constraint == _STREAM_VERSION_KEY:
                actual = None if conn is not None else await self.stream_version(stream)
                raise WrongExpectedVersion(stream, expected, actual) from exc
            if constraint == _EVENT_ID_KEY:
                raise EventDuplicated(f"an event id is stored already: {exc.diag.message_detail}") from exc
            if constraint == _STREAM_EVENT_KEY:
                raise EventDuplicated(f"an event is in stream {stream!r} already") from exc
            raise

    async def _write_on(
        self, conn: Conn, stream: str, query: str, params: Mapping[str, Any], expected: ExpectedVersion
    ) -> list[Row]:
        if expected != ANY:
            return await _fetch(conn, query, params)
        # ANY in the caller's transaction cannot retry (a failed statement aborts the transaction), so
        # the lock comes first, in its own statement: the write's snapshot then sees every earlier
        # writer's commit, and later writers wait for this transaction.
        if conn.autocommit:
            async with conn.transaction():
                await self.lock_stream(stream, conn=conn)
                return await _fetch(conn, query, params)
        await self.lock_stream(stream, conn=conn)
        return await _fetch(conn, query, params)

    async def _run(
        self,
        query: str,
        params: Mapping[str, Any],
        *,
        conn: Conn | None,
        prepare: bool | None = None,
        small: bool = False,
    ) -> list[Row]:
        """Run one statement on ``conn``, or else on a pool connection in autocommit mode: its own
        transaction, one round trip, commit included. ``small``: a write's few rows, fetched with the
        pool connection's kept cursor (:class:`_KeptCursors`).

        The pool's connection is taken with getconn and given back with putconn rather than through
        ``pool.connection()``: that context manager (two generator-based context managers, and a commit
        call on the connection at its end, which autocommit makes an empty one) cost the client about a
        tenth of an append, the most frequent call of all. putconn closes a connection left busy (a
        cancelled query) and rolls back one left in a transaction, as the context manager would."""
        if conn is not None:
            return await _fetch(conn, query, params, prepare)
        pool = self._pool
        own = await pool.getconn()
        try:
            flip = not own.autocommit
            if flip:
                await _set_autocommit(own, True)
            try:
                cur = self._cursors.of(own) if small else own.cursor(binary=True, row_factory=tuple_row)
                await cur.execute(query, params, prepare=prepare)
                return await cur.fetchall()
            finally:
                # A connection left busy (a cancelled query) is closed by the pool, not reused.
                if flip and own.pgconn.transaction_status == TransactionStatus.IDLE:
                    await _set_autocommit(own, False)
        finally:
            await pool.putconn(own)


class _KeptCursors:
    """One binary cursor per pool connection, for the store's writes on it. A new cursor per statement
    starts with empty caches: each statement then looked up the dumper of each parameter type and the
    loader of each result column again (and the time zone of a timestamptz), about a tenth of the
    client's CPU for an append. Only writes use it: their results are a few rows, which the cursor
    holds until its next statement; a read's thousands would stay in memory as long.

    A cursor holds its connection, so a weak key alone would never let go of one; connections the pool
    closed are forgotten when a new one first writes (the pool opens one for each it closes)."""

    def __init__(self) -> None:
        self._by_conn: weakref.WeakKeyDictionary[Conn, psycopg.AsyncCursor[Row]] = weakref.WeakKeyDictionary()

    def of(self, conn: Conn) -> psycopg.AsyncCursor[Row]:
        cursor = self._by_conn.get(conn)
        if cursor is None:
            for closed in [c for c in self._by_conn if c.closed]:
                del self._by_conn[closed]
            cursor = self._by_conn[conn] = conn.cursor(binary=True, row_factory=tuple_row)
        return cursor


def lean_events(rows: Sequence[Row], upcasters: Upcasters) -> list[LeanEvent]:
    """Rows of ``read_streams_lean`` as lean events (their data parsed in one ``loads``, then upcast)."""
    if not rows:
        return []
    docs = loads("[" + ",".join([row[3] for row in rows]) + "]")
    if not any(upcasters.handles(t) for t in {row[1] for row in rows}):  # mostly: no call per event
        return [(row[0], row[1], data, row[4], row[5]) for row, data in zip(rows, docs, strict=True)]
    events: list[LeanEvent] = []
    append = events.append
    for row, data in zip(rows, docs, strict=True):
        event_type = row[1]
        if upcasters.handles(event_type):
            _, data = upcasters.upcast(event_type, row[2], data)
        append((row[0], event_type, data, row[4], row[5]))
    return events


async def _fetch(conn: Conn, query: str, params: Mapping[str, Any], prepare: bool | None = None) -> list[Row]:
    """Run a statement that returns rows, and its rows. Always fetching (never asking the cursor's
    description first) keeps it right in pipeline mode, where results come only at a sync."""
    cur = conn.cursor(binary=True, row_factory=tuple_row)
    await cur.execute(query, params, prepare=prepare)
    return await cur.fetchall()


async def _set_autocommit(conn: Conn, value: bool) -> None:
    """``conn.set_autocommit(value)`` for a connection of the pool that only this task holds, without its
    cost: it takes the connection's lock (no other task can be using it) and runs a generator through
    ``wait`` that checks the transaction status and sets one attribute. Twice a statement, that was about
    a twentieth of an append's client CPU. The same check and attribute here; should the attribute ever
    not be the one ``autocommit`` reads, the method does it."""
    if conn.pgconn.transaction_status == TransactionStatus.IDLE:
        conn._autocommit = value
        if conn.autocommit is value:
            return
    await conn.set_autocommit(value)


def _check_expected(expected_version: ExpectedVersion) -> int | None:
    if expected_version == ANY:
        return None
    if isinstance(expected_version, int) and not isinstance(expected_version, bool):
        if expected_version >= NO_STREAM:
            return expected_version
    raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 0, not {expected_version!r}")


def _with_defaults(event: NewEvent, now: str) -> dict[str, Any]:
    metadata = dict(event.metadata)
    correlation_id = metadata.setdefault("correlation_id", str(event.event_id))
    metadata.setdefault("causation_id", correlation_id)
    metadata.setdefault("timestamp", now)
    return metadata
