-- The online rebuild of the read models (coredb/rebuild.py): new read models are built beside the live
-- ones (rm_tables, rm_operations, rm_trash, rm_databases), in the schema schemasaga_rebuild, batch by batch,
-- then swapped in by one short transaction.

-- name: try_lock
-- One rebuild at a time (a session lock: it goes with the connection, even when the process is killed).
SELECT pg_try_advisory_lock(hashtextextended('schemasaga projections rebuild', 0));

-- name: unlock
SELECT pg_advisory_unlock(hashtextextended('schemasaga projections rebuild', 0));

-- name: shadow_exists
-- Whether a rebuild was started and not swapped in (it was stopped): it is resumed.
SELECT to_regclass('schemasaga_rebuild.progress') IS NOT NULL;

-- name: progress
SELECT horizon::text::bigint, done, total, events FROM schemasaga_rebuild.progress;

-- name: create_shadow
-- Empty copies of the read models (columns, defaults, checks and not-null constraints) and the rebuild's
-- bookkeeping. No keys or indexes yet: index_shadow builds them once the batches are in (one sort each
-- instead of an insertion into every index for every row COPYed). No triggers yet either: they are
-- copied at the swap (rm_operations' NOTIFY would fire for every old operation).
DO $$
DECLARE
    t text;
BEGIN
    DROP SCHEMA IF EXISTS schemasaga_rebuild CASCADE;
    CREATE SCHEMA schemasaga_rebuild;
    FOREACH t IN ARRAY ARRAY['rm_tables', 'rm_operations', 'rm_trash', 'rm_databases'] LOOP
        EXECUTE format('CREATE TABLE schemasaga_rebuild.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING GENERATED INCLUDING STORAGE)', t, t::regclass);
    END LOOP;
    CREATE TABLE schemasaga_rebuild.progress (
        id       boolean PRIMARY KEY DEFAULT true CHECK (id),
        -- Events of transactions at or above it may have been missed by the batches: caught up after.
        horizon  xid8    NOT NULL,
        done     bigint  NOT NULL DEFAULT 0,
        total    bigint  NOT NULL,
        events   bigint  NOT NULL DEFAULT 0
    );
    CREATE TABLE schemasaga_rebuild.streams (n bigserial PRIMARY KEY, stream text NOT NULL);
END
$$;

-- name: index_shadow
-- After the build, before the catch-up (whose deletes look rows up by them): the live read models' keys,
-- unique constraints and indexes on the new ones, under the same names, so that the swapped-in tables are
-- exactly the live ones. Those there already (a resumed rebuild that had built them) are kept.
DO $$
DECLARE
    t text;
    c record;
BEGIN
    FOREACH t IN ARRAY ARRAY['rm_tables', 'rm_operations', 'rm_trash', 'rm_databases'] LOOP
        FOR c IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                 WHERE conrelid = t::regclass AND contype IN ('p', 'u', 'x')
                   AND conname NOT IN (SELECT conname FROM pg_constraint
                                       WHERE conrelid = format('schemasaga_rebuild.%I', t)::regclass)
                 ORDER BY conname LOOP
            EXECUTE format('ALTER TABLE schemasaga_rebuild.%I ADD CONSTRAINT %I %s', t, c.conname, c.def);
        END LOOP;
        FOR c IN SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
                 JOIN pg_class x ON x.oid = i.indexrelid
                 WHERE i.indrelid = t::regclass
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                                   WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
                   AND to_regclass(format('schemasaga_rebuild.%I', x.relname)) IS NULL
                 ORDER BY i.indexrelid LOOP
            EXECUTE regexp_replace(c.def, ' ON (ONLY )?\S+ USING ',
                                   format(' ON schemasaga_rebuild.%I USING ', t));
        END LOOP;
    END LOOP;
END
$$;

-- name: serial_reads
-- The rebuild's connections read batch by batch, each a small part of the events: parallel workers (the
-- planner's plan for a batch that is a tenth of a small store) would scan every event again for each
-- batch, and take the cores the fold runs on. Nor JIT: a batch's read is costed high enough to be compiled,
-- with inlining and optimization, batch after batch (a tenth of its server time, for nothing).
SELECT set_config('max_parallel_workers_per_gather', '0', false), set_config('jit', 'off', false);

-- name: ordered_reads
-- On the connections that only read batches (the read-ahead's and each helper's): the links in the order
-- of their key (stream, version), which ORDER BY asks, straight from its index, rather than a sort of the
-- whole batch (spilled to disk: a batch is tens of megabytes), which the planner prefers on its estimate.
-- About a quarter of the read's server time.
SELECT set_config('enable_sort', 'off', false);

-- name: horizon
-- Events of transactions below it are all committed and visible (event_store_horizon in schema.sql).
SELECT event_store_horizon()::text::bigint;

-- name: list_streams
-- The streams to rebuild from, as this transaction sees them.
INSERT INTO schemasaga_rebuild.streams (stream)
SELECT stream FROM event_store_events_in_streams
WHERE version = 0 AND (stream LIKE 'Table$%%' OR stream LIKE 'Database$%%')
ORDER BY stream;

-- name: start_progress
INSERT INTO schemasaga_rebuild.progress (horizon, total)
VALUES (%(horizon)s::text::xid8, (SELECT count(*) FROM schemasaga_rebuild.streams));

-- name: next_streams
-- The streams of the batch after the one ending at n = after (the first: after progress.done).
SELECT n, stream FROM schemasaga_rebuild.streams
WHERE n > %(after)s
ORDER BY n
LIMIT %(limit)s;

-- name: batch_done
UPDATE schemasaga_rebuild.progress SET done = %(done)s, events = events + %(events)s;

-- name: changed_streams
-- Streams that events of transactions at or above the horizon were appended to.
SELECT DISTINCT s.stream
FROM event_store_events e
JOIN event_store_events_in_streams s ON s.event_id = e.event_id
WHERE e.tx_id >= %(since)s::text::xid8 AND (s.stream LIKE 'Table$%%' OR s.stream LIKE 'Database$%%');

-- name: caught_up
UPDATE schemasaga_rebuild.progress SET horizon = %(horizon)s::text::xid8, events = events + %(events)s;

-- name: forget_tables
DELETE FROM schemasaga_rebuild.rm_tables WHERE table_id = ANY (%(ids)s::uuid[]);

-- name: forget_operations
DELETE FROM schemasaga_rebuild.rm_operations WHERE table_id = ANY (%(ids)s::uuid[]);

-- name: forget_trash
DELETE FROM schemasaga_rebuild.rm_trash WHERE table_id = ANY (%(ids)s::uuid[]);

-- name: forget_databases
DELETE FROM schemasaga_rebuild.rm_databases WHERE name = ANY (%(names)s::text[]);

-- name: analyze_shadow
ANALYZE schemasaga_rebuild.rm_tables, schemasaga_rebuild.rm_operations, schemasaga_rebuild.rm_trash,
        schemasaga_rebuild.rm_databases;

-- name: lock_timeout
SELECT set_config('lock_timeout', %(timeout)s, true);

-- name: counts
SELECT (SELECT count(*) FROM rm_tables), (SELECT count(*) FROM rm_databases);

-- name: lock_live
-- Writers of the read models wait from here until the swap commits (the caller sets lock_timeout).
LOCK TABLE rm_tables, rm_operations, rm_trash, rm_databases IN ACCESS EXCLUSIVE MODE;

-- name: swap_in
-- Under lock_live, once caught up: carry over what no event says (an operation's `starts`, and that a
-- worker is running it), give the new tables the live ones' triggers, drop the live tables and move the
-- new ones in their place (their indexes and constraints keep their names), drop the rebuild's schema.
DO $$
DECLARE
    t text;
    home name;
    g record;
BEGIN
    UPDATE schemasaga_rebuild.rm_operations n
    SET starts = o.starts,
        status = CASE WHEN o.status = 'running' AND n.status = 'pending' THEN 'running' ELSE n.status END
    FROM rm_operations o
    WHERE o.operation_id = n.operation_id AND (o.starts <> 0 OR o.status = 'running');
    FOREACH t IN ARRAY ARRAY['rm_tables', 'rm_operations', 'rm_trash', 'rm_databases'] LOOP
        SELECT relnamespace::regnamespace::name INTO home FROM pg_class WHERE oid = t::regclass;
        FOR g IN SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
                 WHERE tgrelid = t::regclass AND NOT tgisinternal ORDER BY tgname LOOP
            EXECUTE regexp_replace(g.def, ' ON \S+ ', format(' ON schemasaga_rebuild.%I ', t));
        END LOOP;
        -- No CASCADE: an object that depends on a read model stops the swap rather than vanish.
        EXECUTE format('DROP TABLE %s', t::regclass);
        EXECUTE format('ALTER TABLE schemasaga_rebuild.%I SET SCHEMA %I', t, home);
    END LOOP;
    DROP SCHEMA schemasaga_rebuild CASCADE;
END
$$;

-- name: shadow_column_types
-- The new read models' column types, as the binary COPY into them names them.
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'schemasaga_rebuild'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
  AND NOT a.attisdropped;
