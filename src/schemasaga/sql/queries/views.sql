-- The read side: queries answering from the read models; the read-side module of the core database package runs these.

-- name: get_table
SELECT t.table_id, t.database_name, t.name, t.synced, t.exists_, t.deleted, t.columns, t.indexes, t.version,
       t.created_at, t.updated_at, t.trashed, r.creation_rejected
FROM rm_tables t, LATERAL (
    -- A table whose creation was rejected is deleted too (it never was): told apart by that operation.
    SELECT t.deleted AND NOT t.exists_ AND NOT t.trashed AND EXISTS (
        SELECT 1 FROM rm_operations o
        WHERE o.table_id = t.table_id AND o.kind = 'create_table' AND o.status = 'rejected') AS creation_rejected
) r
WHERE t.table_id = %(table_id)s;

-- name: list_tables
-- Deleted tables are listed with include_deleted (every one), trashed ones also with include_trashed.
SELECT t.table_id, t.database_name, t.name, t.synced, t.exists_, t.deleted, t.columns, t.indexes, t.version,
       t.created_at, t.updated_at, t.trashed, r.creation_rejected
FROM rm_tables t, LATERAL (
    -- A table whose creation was rejected is deleted too (it never was): told apart by that operation.
    SELECT t.deleted AND NOT t.exists_ AND NOT t.trashed AND EXISTS (
        SELECT 1 FROM rm_operations o
        WHERE o.table_id = t.table_id AND o.kind = 'create_table' AND o.status = 'rejected') AS creation_rejected
) r
WHERE (%(database)s::text IS NULL OR t.database_name = %(database)s)
  AND (%(databases)s::text[] IS NULL OR t.database_name = ANY(%(databases)s::text[]))
  AND (NOT t.deleted OR %(include_deleted)s OR (t.trashed AND %(include_trashed)s))
  AND (%(after)s::uuid IS NULL OR t.table_id > %(after)s)
  AND (%(name_prefix)s::text IS NULL OR starts_with(t.name, %(name_prefix)s::text))
  AND (%(status)s::text IS NULL
       OR (%(status)s = 'synced' AND t.synced AND NOT t.deleted)
       OR (%(status)s = 'in_flight' AND NOT t.synced AND NOT t.deleted)
       OR (%(status)s = 'deleted' AND t.deleted AND NOT r.creation_rejected)
       OR (%(status)s = 'rejected' AND r.creation_rejected)
       OR (%(status)s = 'trashed' AND t.trashed))
ORDER BY t.table_id
LIMIT %(limit)s;

-- name: tables_begun_by
-- The tables whose stream had an event by a moment, keyset-paged by id: the candidates of the whole
-- system at that moment, with their read model row and whether their stream moved on since (created_at
-- rises with the version, so a stream's first row tells when it began and its last when it last moved;
-- one that did not move is as its read model says, the others are read from their streams).
SELECT t.table_id, t.database_name, t.name, t.synced, t.exists_, t.deleted, t.columns, t.indexes, t.version,
       t.created_at, t.updated_at, t.trashed, r.creation_rejected,
       (SELECT s.created_at FROM event_store_events_in_streams s
        WHERE s.stream = 'Table$' || t.table_id::text ORDER BY s.version DESC LIMIT 1)
           > %(at)s::timestamptz AS moved_since
FROM rm_tables t, LATERAL (
    -- As in list_tables: a rejected creation told apart from a deleted table (used when not moved since).
    SELECT t.deleted AND NOT t.exists_ AND NOT t.trashed AND EXISTS (
        SELECT 1 FROM rm_operations o
        WHERE o.table_id = t.table_id AND o.kind = 'create_table' AND o.status = 'rejected') AS creation_rejected
) r
WHERE (%(database)s::text IS NULL OR t.database_name = %(database)s)
  AND (%(databases)s::text[] IS NULL OR t.database_name = ANY(%(databases)s::text[]))
  AND (%(after)s::uuid IS NULL OR t.table_id > %(after)s)
  AND (SELECT s.created_at FROM event_store_events_in_streams s
       WHERE s.stream = 'Table$' || t.table_id::text ORDER BY s.version LIMIT 1) <= %(at)s::timestamptz
ORDER BY t.table_id
LIMIT %(limit)s;

-- name: get_operation
SELECT operation_id, table_id, kind, status, detail,
       failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
       steps_done, last_error, accepted_seq,
       created_at, updated_at, finished_at, undoes, undone_by
FROM rm_operations WHERE operation_id = %(operation_id)s;

-- name: list_operations
SELECT operation_id, table_id, kind, status, detail,
       failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
       steps_done, last_error, accepted_seq,
       created_at, updated_at, finished_at, undoes, undone_by
FROM rm_operations
WHERE (%(table_id)s::uuid IS NULL OR table_id = %(table_id)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(databases)s::text[] IS NULL
       OR table_id IN (SELECT table_id FROM rm_tables WHERE database_name = ANY(%(databases)s::text[])))
  -- keyset: older than the operation the previous page ended with (an index range scan, no OFFSET)
  AND (%(after_seq)s::bigint IS NULL OR accepted_seq < %(after_seq)s::bigint)
ORDER BY accepted_seq DESC
LIMIT %(limit)s;

-- name: operation_seq
-- Where a page of operations ended (the cursor of the next one).
SELECT accepted_seq FROM rm_operations WHERE operation_id = %(operation_id)s;

-- name: unsettled_operations
SELECT operation_id, table_id, kind, status, detail,
       failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
       steps_done, last_error, accepted_seq,
       created_at, updated_at, finished_at, undoes, undone_by
FROM rm_operations
WHERE status IN ('pending', 'running') ORDER BY accepted_seq;

-- name: tables_of_database
-- Tables that were ever physically created (or are being created) in the database.
SELECT table_id, name FROM rm_tables
WHERE database_name = %(database)s AND (exists_ OR NOT deleted)
ORDER BY name;

-- name: tables_by_id
-- The rows of many tables at once (a drift scan's batch), by primary key.
SELECT t.table_id, t.database_name, t.name, t.synced, t.exists_, t.deleted, t.columns, t.indexes, t.version,
       t.created_at, t.updated_at, t.trashed
FROM rm_tables t
WHERE t.table_id = ANY (%(table_ids)s::uuid[]);

-- name: list_databases
SELECT d.name, d.engine, d.display, d.source, d.status, d.server_version, d.key_id, d.version,
       d.created_at, d.updated_at,
       (SELECT count(*) FROM rm_tables t WHERE t.database_name = d.name AND NOT t.deleted) AS live_tables
FROM rm_databases d
WHERE (%(name)s::text IS NULL OR d.name = %(name)s)
  AND (%(databases)s::text[] IS NULL OR d.name = ANY(%(databases)s::text[]))
  AND (%(after)s::text IS NULL OR d.name > %(after)s::text)
ORDER BY d.name
LIMIT %(limit)s;

-- name: registered_urls
SELECT name, engine, url_encrypted, identity FROM rm_databases ORDER BY name;

-- name: identities
-- The registered databases of one engine, to tell whether a new one is one of them.
SELECT name, url_encrypted, identity FROM rm_databases WHERE engine = %(engine)s ORDER BY name;

-- name: holding_identity
SELECT name FROM rm_databases WHERE identity = %(identity)s;

-- name: get_trash
SELECT trash_id, table_id, database_name, kind, origin_table, origin_column, physical_name, status,
       trashed_at, purge_at
FROM rm_trash WHERE trash_id = %(trash_id)s;

-- name: list_trash
SELECT trash_id, table_id, database_name, kind, origin_table, origin_column, physical_name, status,
       trashed_at, purge_at
FROM rm_trash
WHERE status IN ('trashed', 'restoring', 'purging')
  AND (%(database)s::text IS NULL OR database_name = %(database)s)
  AND (%(databases)s::text[] IS NULL OR database_name = ANY(%(databases)s::text[]))
ORDER BY trashed_at DESC, trash_id;

-- name: trash_due
SELECT trash_id, table_id, database_name, kind, origin_table, origin_column, physical_name, status,
       trashed_at, purge_at
FROM rm_trash
WHERE status = 'trashed' AND purge_at <= now()
ORDER BY purge_at, trash_id
LIMIT %(limit)s;
