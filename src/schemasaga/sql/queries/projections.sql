-- name: upsert_table
INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, deleted, columns, version,
                       created_at, updated_at, holds_name)
VALUES (%(table_id)s, %(database)s, %(name)s, %(synced)s, %(exists)s, %(deleted)s, %(columns)s,
        %(version)s, %(at)s, %(at)s, %(holds_name)s)
ON CONFLICT (table_id) DO UPDATE
SET synced = EXCLUDED.synced, exists_ = EXCLUDED.exists_, deleted = EXCLUDED.deleted,
    columns = EXCLUDED.columns, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
    holds_name = EXCLUDED.holds_name;

-- name: insert_operation
INSERT INTO rm_operations (operation_id, table_id, kind, status, detail, accepted_seq, created_at, updated_at)
VALUES (%(operation_id)s, %(table_id)s, %(kind)s, 'pending', %(detail)s, %(seq)s, %(at)s, %(at)s)
ON CONFLICT (operation_id) DO NOTHING;

-- name: operation_step_done
UPDATE rm_operations
SET steps_done = steps_done || to_jsonb(%(step)s::text), updated_at = %(at)s
WHERE operation_id = %(operation_id)s;

-- name: operation_attempt_failed
UPDATE rm_operations
SET status = 'pending', last_error = %(error)s, failed_attempts = %(attempt)s, updated_at = %(at)s
WHERE operation_id = %(operation_id)s;

-- name: operation_compensating
UPDATE rm_operations
SET detail = detail || jsonb_build_object('compensating', true, 'compensation_reason', %(reason)s::text),
    updated_at = %(at)s
WHERE operation_id = %(operation_id)s;

-- name: operation_finished
UPDATE rm_operations
SET status = %(status)s, last_error = coalesce(%(error)s, last_error), updated_at = %(at)s, finished_at = %(at)s
WHERE operation_id = %(operation_id)s;

-- name: operation_running
-- Not an event: it says nothing about the schema; a rebuilt operation is pending until its job runs.
UPDATE rm_operations
SET status = 'running'
WHERE operation_id = %(operation_id)s AND status IN ('pending', 'running');

-- name: get_table
SELECT table_id, database_name, name, synced, exists_, deleted, columns, version, created_at, updated_at
FROM rm_tables WHERE table_id = %(table_id)s;

-- name: list_tables
SELECT table_id, database_name, name, synced, exists_, deleted, columns, version, created_at, updated_at
FROM rm_tables
WHERE (%(database)s::text IS NULL OR database_name = %(database)s)
  AND (%(include_deleted)s OR NOT deleted)
  AND (%(after)s::uuid IS NULL OR table_id > %(after)s)
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
ORDER BY accepted_seq DESC
LIMIT %(limit)s;

-- name: open_operations
SELECT operation_id, table_id FROM rm_operations WHERE status IN ('pending', 'running') ORDER BY accepted_seq;

-- name: truncate_read_models
TRUNCATE rm_tables, rm_operations;

-- name: table_streams
-- In the order the tables were created: a name is taken again only after its first table let it go,
-- so a rebuild meets them in that order too.
SELECT s.stream
FROM event_store_events_in_streams s JOIN event_store_events e USING (event_id)
WHERE s.stream LIKE 'Table$%%' AND s.version = 0
ORDER BY e.position;
