-- The live event feed (services/feed.py): positions, then events up to a settled one.

-- name: high_position
-- The last position handed out; read before `running`, in a statement of its own.
SELECT coalesce(pg_sequence_last_value('event_store_events_position_seq'::regclass), 0);

-- name: running
-- The xids of this database's transactions running now (every one: a snapshot lists only those below its
-- xmax). Another database's transactions cannot write our events: a long one there holds nothing back.
SELECT coalesce(array_agg(backend_xid::text::bigint), '{}')
FROM pg_stat_activity
WHERE datname = current_database() AND backend_xid IS NOT NULL;

-- name: read
-- after < position <= to, filtered; each event with the stream it was appended to and its version there.
-- databases: only events of the tables of these databases (their Table$ streams, through rm_tables) and
-- of their registrations (Database$<name>); database_streams are those Database$ stream names.
SELECT e.position, e.event_id, e.event_type, e.schema_version, e.data::text, e.metadata::text, e.created_at,
       e.valid_at, home.stream, home.version
FROM event_store_events e
LEFT JOIN LATERAL (
    SELECT s.stream, s.version FROM event_store_events_in_streams s
    WHERE s.event_id = e.event_id ORDER BY s.created_at, s.stream LIMIT 1
) AS home ON true
WHERE e.position > %(after)s AND e.position <= %(to)s
  AND (%(event_types)s::text[] IS NULL OR e.event_type = ANY (%(event_types)s::text[]))
  AND (%(correlation_id)s::text IS NULL OR e.metadata ->> 'correlation_id' = %(correlation_id)s::text)
  AND (%(stream)s::text IS NULL OR EXISTS (
        SELECT 1 FROM event_store_events_in_streams s
        WHERE s.event_id = e.event_id AND s.stream = %(stream)s::text))
  AND (%(databases)s::text[] IS NULL OR EXISTS (
        SELECT 1 FROM event_store_events_in_streams s
        WHERE s.event_id = e.event_id
          AND (s.stream = ANY (%(database_streams)s::text[])
               OR EXISTS (SELECT 1 FROM rm_tables t
                          WHERE s.stream ~ '^Table\$[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                            AND t.table_id = CASE WHEN s.stream ~ '^Table\$[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                                  THEN substr(s.stream, 7)::uuid END
                            AND t.database_name = ANY (%(databases)s::text[])))))
ORDER BY e.position
LIMIT %(limit)s;

-- name: listening
-- After LISTEN, on the listening connection: appends notify from now on (migration 0017), ...
SELECT pg_advisory_lock_shared(-690804931, 1);

-- name: heard_since_wait
-- How long heard_since waits (in the transaction that runs it): not for ever on a transaction left open.
SET LOCAL lock_timeout = '1s';

-- name: heard_since
-- ... and once this returns, every transaction that appended without notifying has ended: (…, 2) is held
-- shared by each of them to its end. Taken and let go in one statement.
SELECT pg_advisory_lock(-690804931, 2), pg_advisory_unlock(-690804931, 2);
