-- name: tables_of_database
-- Tables that were ever physically created (or are being created) in the database.
SELECT table_id, name FROM rm_tables
WHERE database_name = %(database)s AND (exists_ OR NOT deleted)
ORDER BY name;

-- name: unsettled_operations
SELECT operation_id, table_id, kind, status, updated_at FROM rm_operations
WHERE status IN ('pending', 'running') ORDER BY accepted_seq;

-- name: stuck_operations
-- Operations not finished whose table has no job waiting or running: nothing will ever finish them.
SELECT o.operation_id, o.table_id, o.kind, o.status, o.updated_at
FROM rm_operations o
WHERE o.status IN ('pending', 'running')
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.lock = 'table:' || o.table_id::text AND j.status IN ('todo', 'doing')
  )
ORDER BY o.accepted_seq;
