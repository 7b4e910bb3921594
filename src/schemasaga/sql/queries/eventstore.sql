-- Named queries of the event store, loaded once by name (see the sql package).
--
-- Every read returns the same columns, in this order, so one function turns rows into RecordedEvents:
-- position, event_id, event_type, schema_version, data, metadata, created_at, valid_at, stream version
-- (or NULL), and the transaction id for the follower. data and metadata come as text: the store
-- parses a whole batch of them with one json.loads call, much faster than one call per value.

-- name: lock_stream
-- Serializes the writers of a stream until the end of the transaction. Every write statement below
-- takes it too, but its snapshot may predate the lock (READ COMMITTED: one snapshot per statement), so
-- a write that must not fail on a concurrent commit (expected version ANY) takes it in this statement
-- first: its own snapshot is then taken after the previous holder committed.
SELECT pg_advisory_xact_lock(hashtextextended(%(stream)s, 0));

-- name: append_event
-- append_events for one event, without arrays: the common case, and about twice as fast.
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended(%(stream)s, 0))
), head AS (
    SELECT coalesce((SELECT max(version) FROM event_store_events_in_streams WHERE stream = %(stream)s), -1)
           AS version
    FROM locked
), ins AS (
    INSERT INTO event_store_events (event_id, event_type, schema_version, data, metadata, valid_at)
    SELECT %(event_id)s::uuid, %(event_type)s::text, %(schema_version)s::integer, %(data)s::jsonb,
           %(metadata)s::jsonb, %(valid_at)s::timestamptz
    FROM head
    WHERE %(expected)s::integer IS NULL OR head.version = %(expected)s::integer
    RETURNING position, event_id, created_at
), linked AS (
    INSERT INTO event_store_events_in_streams (stream, version, event_id, created_at)
    SELECT %(stream)s, head.version + 1, ins.event_id, ins.created_at
    FROM head, ins
)
SELECT head.version, ins.position, ins.created_at
FROM head LEFT JOIN ins ON true;

-- name: append_events
-- One round trip for any number of events: locks the stream, checks the expected version, inserts the
-- events and their stream rows. A writer that committed between this statement's snapshot and its lock
-- makes the stream row insert fail on the primary key (a conflict; the store retries ANY appends). When the check fails nothing is inserted and a single row with a NULL position comes
-- back, carrying the stream's actual version. expected NULL means: no check.
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended(%(stream)s, 0))
), head AS (
    SELECT coalesce((SELECT max(version) FROM event_store_events_in_streams WHERE stream = %(stream)s), -1)
           AS version
    FROM locked
), ok AS (
    SELECT version FROM head WHERE %(expected)s::integer IS NULL OR version = %(expected)s::integer
), new AS (
    SELECT n.ord, n.event_id, n.event_type, n.schema_version, n.data, n.metadata, n.valid_at,
           ok.version + n.ord::integer AS stream_version
    FROM ok, unnest(%(event_ids)s::uuid[], %(event_types)s::text[], %(schema_versions)s::integer[],
                    %(data)s::text[], %(metadata)s::text[], %(valid_ats)s::timestamptz[])
             WITH ORDINALITY AS n (event_id, event_type, schema_version, data, metadata, valid_at, ord)
), ins AS (
    INSERT INTO event_store_events (event_id, event_type, schema_version, data, metadata, valid_at)
    SELECT event_id, event_type, schema_version, data::jsonb, metadata::jsonb, valid_at
    FROM new
    ORDER BY ord
    RETURNING position, event_id, created_at
), linked AS (
    INSERT INTO event_store_events_in_streams (stream, version, event_id, created_at)
    SELECT %(stream)s, new.stream_version, ins.event_id, ins.created_at
    FROM new JOIN ins USING (event_id)
)
SELECT head.version, ins.position, ins.created_at
FROM head LEFT JOIN ins ON true
ORDER BY ins.position;

-- name: link_events
-- Adds stored events to a stream, after the same version check as append_events, and only when every
-- id is a stored event not in the stream yet. Returns the stream's version before the link, the first
-- unknown id, the first id in the stream already, and how many rows were linked.
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(hashtextextended(%(stream)s, 0))
), head AS (
    SELECT coalesce((SELECT max(version) FROM event_store_events_in_streams WHERE stream = %(stream)s), -1)
           AS version
    FROM locked
), n AS (
    SELECT n.event_id, n.ord FROM unnest(%(event_ids)s::uuid[]) WITH ORDINALITY AS n (event_id, ord)
), missing AS (
    SELECT n.event_id FROM n
    WHERE NOT EXISTS (SELECT 1 FROM event_store_events e WHERE e.event_id = n.event_id)
    ORDER BY n.ord LIMIT 1
), present AS (
    SELECT n.event_id FROM n
    WHERE EXISTS (SELECT 1 FROM event_store_events_in_streams s
                  WHERE s.stream = %(stream)s AND s.event_id = n.event_id)
    ORDER BY n.ord LIMIT 1
), ins AS (
    INSERT INTO event_store_events_in_streams (stream, version, event_id)
    SELECT %(stream)s, head.version + n.ord::integer, n.event_id
    FROM head, n
    WHERE (%(expected)s::integer IS NULL OR head.version = %(expected)s::integer)
      AND NOT EXISTS (SELECT 1 FROM missing) AND NOT EXISTS (SELECT 1 FROM present)
    ORDER BY n.ord
    RETURNING 1
)
SELECT head.version, (SELECT event_id FROM missing), (SELECT event_id FROM present), (SELECT count(*) FROM ins)
FROM head;

-- name: stream_version
SELECT coalesce(max(version), -1) FROM event_store_events_in_streams WHERE stream = %(stream)s;

-- name: streams_of
SELECT stream FROM event_store_events_in_streams WHERE event_id = %(event_id)s ORDER BY created_at, stream;

-- name: get_event
SELECT position, event_id, event_type, schema_version, data::text, metadata::text, created_at, valid_at,
       NULL::integer
FROM event_store_events
WHERE event_id = %(event_id)s;

-- name: stream_cut
-- The stream's last version at a moment (until): the last event that joined it by then, and on to the end
-- of that event's transaction, never a part of one; NULL when no event had joined it yet. Short walks of
-- the primary key: created_at rises with the version (clock_timestamp() under the stream's lock), and a
-- transaction's events have consecutive versions (it holds the lock to its end), so its end is just
-- before the first later version of another transaction (none: the rest is the cut's transaction).
SELECT coalesce(
           (SELECT n.version - 1 FROM event_store_events_in_streams n
            WHERE n.stream = %(stream)s AND n.version > cut.version AND n.tx_id <> cut.tx_id
            ORDER BY n.version LIMIT 1),
           (SELECT max(version) FROM event_store_events_in_streams WHERE stream = %(stream)s))
FROM (SELECT c.version, c.tx_id FROM event_store_events_in_streams c
      WHERE c.stream = %(stream)s AND c.created_at <= %(until)s::timestamptz
      ORDER BY c.version DESC LIMIT 1) AS cut;

-- name: read_streams_until
-- Several streams as each was at a moment (until), in one statement: per stream, stream_cut's last
-- version, then its events up to it, by stream and version. The stream is the last column.
WITH cut AS (
    SELECT st.stream,
           (SELECT coalesce(
                       (SELECT n.version - 1 FROM event_store_events_in_streams n
                        WHERE n.stream = st.stream AND n.version > c.version AND n.tx_id <> c.tx_id
                        ORDER BY n.version LIMIT 1),
                       (SELECT max(version) FROM event_store_events_in_streams WHERE stream = st.stream))
            FROM (SELECT c.version, c.tx_id FROM event_store_events_in_streams c
                  WHERE c.stream = st.stream AND c.created_at <= %(until)s::timestamptz
                  ORDER BY c.version DESC LIMIT 1) AS c) AS last
    FROM unnest(%(streams)s::text[]) AS st(stream)
)
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version, s.stream
FROM cut
JOIN event_store_events_in_streams s ON s.stream = cut.stream AND s.version <= cut.last
JOIN event_store_events e ON e.event_id = s.event_id
ORDER BY s.stream, s.version;

-- name: read_stream_forward
-- from/to are inclusive stream versions (a read at a moment bounds to_version with stream_cut).
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version
FROM event_store_events_in_streams s
JOIN event_store_events e ON e.event_id = s.event_id
WHERE s.stream = %(stream)s AND s.version BETWEEN %(from_version)s AND %(to_version)s
ORDER BY s.version
LIMIT %(limit)s;

-- name: read_stream_backward
-- read_stream_forward, newest first.
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version
FROM event_store_events_in_streams s
JOIN event_store_events e ON e.event_id = s.event_id
WHERE s.stream = %(stream)s AND s.version BETWEEN %(from_version)s AND %(to_version)s
ORDER BY s.version DESC
LIMIT %(limit)s;

-- name: read_all_forward
-- The global log by position: after < position <= to. Optional filters are NULL when unused; the
-- queries run unprepared, so the planner sees the actual values and drops the unused conditions.
-- With a stream filter, each event also carries its version in that stream.
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version
FROM event_store_events e
LEFT JOIN event_store_events_in_streams s
       ON %(stream)s::text IS NOT NULL AND s.stream = %(stream)s::text AND s.event_id = e.event_id
WHERE e.position > %(after)s AND e.position <= %(to)s
  AND (%(event_types)s::text[] IS NULL OR e.event_type = ANY (%(event_types)s::text[]))
  AND (%(newer_than)s::timestamptz IS NULL OR e.created_at > %(newer_than)s::timestamptz)
  AND (%(older_than)s::timestamptz IS NULL OR e.created_at < %(older_than)s::timestamptz)
  AND (%(correlation_id)s::text IS NULL OR e.metadata ->> 'correlation_id' = %(correlation_id)s::text)
  AND (%(stream)s::text IS NULL OR s.stream IS NOT NULL)
ORDER BY e.position
LIMIT %(limit)s;

-- name: read_all_backward
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version
FROM event_store_events e
LEFT JOIN event_store_events_in_streams s
       ON %(stream)s::text IS NOT NULL AND s.stream = %(stream)s::text AND s.event_id = e.event_id
WHERE e.position > %(after)s AND e.position <= %(to)s
  AND (%(event_types)s::text[] IS NULL OR e.event_type = ANY (%(event_types)s::text[]))
  AND (%(newer_than)s::timestamptz IS NULL OR e.created_at > %(newer_than)s::timestamptz)
  AND (%(older_than)s::timestamptz IS NULL OR e.created_at < %(older_than)s::timestamptz)
  AND (%(correlation_id)s::text IS NULL OR e.metadata ->> 'correlation_id' = %(correlation_id)s::text)
  AND (%(stream)s::text IS NULL OR s.stream IS NOT NULL)
ORDER BY e.position DESC
LIMIT %(limit)s;

-- name: follow
-- The global log in commit-safe order: (tx_id, position), and only rows of transactions below the
-- horizon (event_store_horizon() in schema.sql, evaluated once per query as an InitPlan), so that no
-- row can later appear before the checkpoint. Each event comes with the stream it was appended to (its
-- first stream row) and its version there.
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at, e.valid_at,
       home.version, e.tx_id::text::bigint, home.stream
FROM event_store_events e
LEFT JOIN LATERAL (
    SELECT s.stream, s.version FROM event_store_events_in_streams s
    WHERE s.event_id = e.event_id ORDER BY s.created_at, s.stream LIMIT 1
) AS home ON true
WHERE (e.tx_id, e.position) > (%(tx_id)s::text::xid8, %(position)s::bigint)
  AND e.tx_id < (SELECT event_store_horizon())
ORDER BY e.tx_id, e.position
LIMIT %(limit)s;

-- name: read_streams
-- Every event of several streams, stream by stream in version order (a batch of a projection rebuild),
-- each with its stream, version and writing transaction (the follow query's columns).
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version, e.tx_id::text::bigint, s.stream
FROM event_store_events_in_streams s
JOIN event_store_events e ON e.event_id = s.event_id
WHERE s.stream = ANY (%(streams)s::text[])
ORDER BY s.stream, s.version;

-- name: read_streams_lean
-- The same events as read_streams with only what a projection folds (no metadata, ids or transaction):
-- the fast path of the online rebuild. Each event looked up by its id (the LATERAL with OFFSET 0 keeps the
-- planner from joining otherwise): a batch of 1,000 streams is a tenth of a store of 10,000 tables, and its
-- estimate then makes a hash join over every event of the store look cheaper, batch after batch.
SELECT s.stream, e.event_type, e.schema_version, e.data::text, e.created_at, e.position
FROM event_store_events_in_streams s
CROSS JOIN LATERAL (
    SELECT event_type, schema_version, data, created_at, position
    FROM event_store_events WHERE event_id = s.event_id OFFSET 0
) e
WHERE s.stream = ANY (%(streams)s::text[])
ORDER BY s.stream, s.version;

-- name: read_streams_from
-- The events of several streams from a version each (after their snapshots: loading many aggregates at
-- once), stream by stream in version order, with the follow query's columns.
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, s.version, e.tx_id::text::bigint, s.stream
FROM unnest(%(streams)s::text[], %(froms)s::int[]) AS w(stream, from_version)
JOIN event_store_events_in_streams s ON s.stream = w.stream AND s.version >= w.from_version
JOIN event_store_events e ON e.event_id = s.event_id
ORDER BY s.stream, s.version;

-- name: latest_snapshots
-- The newest snapshot of each of several streams.
SELECT DISTINCT ON (stream) stream, version, state
FROM event_store_snapshots
WHERE stream = ANY (%(streams)s::text[])
ORDER BY stream, version DESC;

-- name: checkpoint_of
-- The follower checkpoint of one event (the cursor of a page of the global log).
SELECT tx_id::text::bigint, position FROM event_store_events WHERE event_id = %(event_id)s;

-- name: follow_head
-- The checkpoint of the last event a follower could read now (none when there is none).
SELECT e.tx_id::text::bigint, e.position
FROM event_store_events e
WHERE e.tx_id < (SELECT event_store_horizon())
ORDER BY e.tx_id DESC, e.position DESC
LIMIT 1;

-- name: future_tx_ids
-- True when some event carries a transaction id this server has not handed out yet: the events were
-- copied from another cluster (dump and restore, logical replication), and following by tx_id would
-- stall on them, or skip the new ones, until the local counter catches up.
SELECT coalesce(max(tx_id) >= pg_snapshot_xmax(pg_current_snapshot()), false) FROM event_store_events;

-- name: save_snapshot
INSERT INTO event_store_snapshots (stream, version, state)
VALUES (%(stream)s, %(version)s, %(state)s::jsonb)
ON CONFLICT (stream, version) DO UPDATE SET state = excluded.state, created_at = clock_timestamp()
RETURNING version;

-- name: load_snapshot
SELECT version, state
FROM event_store_snapshots
WHERE stream = %(stream)s AND version <= %(max_version)s
ORDER BY version DESC
LIMIT 1;
