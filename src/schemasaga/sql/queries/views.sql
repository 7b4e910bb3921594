-- The read side: queries answering from the read models; the read-side module of the core database package runs these.

-- name: get_table
SELECT table_id, database_name, name, synced, exists_, deleted, columns, indexes, version, created_at,
       updated_at
FROM rm_tables WHERE table_id = %(table_id)s;

-- name: list_tables
SELECT table_id, database_name, name, synced, exists_, deleted, columns, indexes, version, created_at,
       updated_at
FROM rm_tables
WHERE (%(database)s::text IS NULL OR database_name = %(database)s)
  AND (%(databases)s::text[] IS NULL OR database_name = ANY(%(databases)s::text[]))
  AND (%(include_deleted)s OR NOT deleted)
  AND (%(after)s::uuid IS NULL OR table_id > %(after)s)
  AND (%(name_prefix)s::text IS NULL OR starts_with(name, %(name_prefix)s::text))
ORDER BY table_id
LIMIT %(limit)s;

-- name: get_operation
SELECT operation_id, table_id, kind, status, detail,
       failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
       steps_done, last_error, accepted_seq,
       created_at, updated_at, finished_at
FROM rm_operations WHERE operation_id = %(operation_id)s;

-- name: list_operations
SELECT operation_id, table_id, kind, status, detail,
       failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
       steps_done, last_error, accepted_seq,
       created_at, updated_at, finished_at
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
       created_at, updated_at, finished_at
FROM rm_operations
WHERE status IN ('pending', 'running') ORDER BY accepted_seq;

-- name: tables_of_database
-- Tables that were ever physically created (or are being created) in the database.
SELECT table_id, name FROM rm_tables
WHERE database_name = %(database)s AND (exists_ OR NOT deleted)
ORDER BY name;

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
SELECT name, engine, url_encrypted FROM rm_databases ORDER BY name;

-- name: identities
-- The registered databases of one engine, to tell whether a new one is one of them.
SELECT name, url_encrypted, identity FROM rm_databases WHERE engine = %(engine)s ORDER BY name;

-- name: holding_identity
SELECT name FROM rm_databases WHERE identity = %(identity)s;
