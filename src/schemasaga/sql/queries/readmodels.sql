-- Writes of the read models (rm_tables, rm_operations, rm_databases) and the locks taken on them;
-- the read-model module of the core database package is the only one to run these.

-- name: upsert_table
INSERT INTO rm_tables (table_id, database_name, name, synced, exists_, deleted, columns, indexes,
                       version, created_at, updated_at, holds_name, trashed)
VALUES (%(table_id)s, %(database)s, %(name)s, %(synced)s, %(exists)s, %(deleted)s, %(columns)s,
        %(indexes)s, %(version)s, %(at)s, %(at)s, %(holds_name)s, %(trashed)s)
ON CONFLICT (table_id) DO UPDATE
SET name = EXCLUDED.name, synced = EXCLUDED.synced, exists_ = EXCLUDED.exists_,
    deleted = EXCLUDED.deleted, columns = EXCLUDED.columns, indexes = EXCLUDED.indexes,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, holds_name = EXCLUDED.holds_name,
    trashed = EXCLUDED.trashed;

-- name: upsert_trash
-- An entry's times are those of the event that put it in the trash; only its status moves later.
INSERT INTO rm_trash (trash_id, table_id, database_name, kind, origin_table, origin_column, physical_name,
                      status, trashed_at, purge_at, updated_at)
VALUES (%(trash_id)s, %(table_id)s, %(database)s, %(kind)s, %(origin_table)s, %(origin_column)s,
        %(physical_name)s, %(status)s, %(at)s, %(at)s + make_interval(secs => %(retention_s)s), %(at)s)
ON CONFLICT (trash_id) DO UPDATE
SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
WHERE rm_trash.status IS DISTINCT FROM EXCLUDED.status;

-- name: insert_operation
INSERT INTO rm_operations (operation_id, table_id, kind, status, detail, accepted_seq, created_at, updated_at,
                           undoes)
VALUES (%(operation_id)s, %(table_id)s, %(kind)s, 'pending', %(detail)s, %(seq)s, %(at)s, %(at)s, %(undoes)s)
ON CONFLICT (operation_id) DO NOTHING;

-- name: operation_undone
-- The undo %(operation_id)s completed: the operation it undoes is undone by it.
UPDATE rm_operations t
SET undone_by = u.operation_id, updated_at = %(at)s
FROM rm_operations u
WHERE u.operation_id = %(operation_id)s AND t.operation_id = u.undoes;

-- name: operation_steps_done
-- The steps one transaction recorded as completed for the operation, in order.
UPDATE rm_operations
SET steps_done = steps_done || to_jsonb(%(steps)s::text[]), updated_at = %(at)s
WHERE operation_id = %(operation_id)s;

-- name: operation_steps_done_finished
-- operation_steps_done and operation_finished in one statement: the steps a transaction completed and
-- the outcome that followed them (a saga's last group and its confirmation).
UPDATE rm_operations
SET steps_done = steps_done || to_jsonb(%(steps)s::text[]), status = %(status)s,
    last_error = coalesce(%(error)s, last_error), updated_at = %(at)s, finished_at = %(at)s
WHERE operation_id = %(operation_id)s
-- The row as views.sql's get_operation reads it: the finished operation handed to this process's
-- waiters once committed (coredb.notices), instead of their reading it again.
RETURNING operation_id, table_id, kind, status, detail,
          failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
          steps_done, last_error, accepted_seq,
          created_at, updated_at, finished_at, undoes, undone_by;

-- name: operation_attempt_failed
UPDATE rm_operations
SET status = 'pending', last_error = %(error)s, failed_attempts = %(attempt)s, updated_at = %(at)s,
    -- who held the table when the attempt timed out waiting for its lock (empty: not a lock wait)
    detail = detail || jsonb_build_object('blocked_by', %(blocked_by)s::jsonb)
WHERE operation_id = %(operation_id)s;

-- name: operation_compensating
UPDATE rm_operations
SET detail = detail || jsonb_build_object('compensating', true, 'compensation_reason', %(reason)s::text),
    updated_at = %(at)s
WHERE operation_id = %(operation_id)s;

-- name: operation_finished
UPDATE rm_operations
SET status = %(status)s, last_error = coalesce(%(error)s, last_error), updated_at = %(at)s, finished_at = %(at)s
WHERE operation_id = %(operation_id)s
-- As operation_steps_done_finished: the row as get_operation reads it.
RETURNING operation_id, table_id, kind, status, detail,
          failed_attempts + CASE WHEN status = 'pending' THEN 0 ELSE 1 END AS attempts,
          steps_done, last_error, accepted_seq,
          created_at, updated_at, finished_at, undoes, undone_by;

-- name: truncate_read_models
TRUNCATE rm_tables, rm_operations, rm_trash;

-- name: table_streams
-- In the order the tables were created: a name is taken again only after its first table let it go,
-- so a rebuild meets them in that order too.
SELECT s.stream
FROM event_store_events_in_streams s JOIN event_store_events e USING (event_id)
WHERE s.stream LIKE 'Table$%%' AND s.version = 0
ORDER BY e.position;

-- name: upsert_database
INSERT INTO rm_databases (name, engine, url_encrypted, key_id, display, source, status, server_version,
                          version, created_at, updated_at, identity)
VALUES (%(name)s, %(engine)s, %(url_encrypted)s, %(key_id)s, %(display)s, %(source)s, %(status)s,
        %(server_version)s, %(version)s, %(created_at)s, %(updated_at)s, %(identity)s)
ON CONFLICT (name) DO UPDATE
SET engine = EXCLUDED.engine, url_encrypted = EXCLUDED.url_encrypted, key_id = EXCLUDED.key_id,
    display = EXCLUDED.display, source = EXCLUDED.source, status = EXCLUDED.status,
    server_version = EXCLUDED.server_version, version = EXCLUDED.version,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, identity = EXCLUDED.identity;

-- name: delete_database
DELETE FROM rm_databases WHERE name = %(name)s;

-- name: truncate_databases
TRUNCATE rm_databases;

-- name: database_streams
SELECT DISTINCT stream FROM event_store_events_in_streams WHERE stream LIKE 'Database$%%' ORDER BY stream;

-- name: lock_database
-- Held while unregistering; a command creating a table in the database should take it FOR SHARE.
SELECT name FROM rm_databases WHERE name = %(name)s FOR UPDATE;

-- name: require_database
SELECT name FROM rm_databases WHERE name = %(name)s FOR SHARE;

-- name: name_held
SELECT EXISTS (SELECT 1 FROM rm_tables
               WHERE database_name = %(database)s AND lower(name) = lower(%(name)s) AND holds_name);

-- name: live_tables
SELECT count(*) FROM rm_tables WHERE database_name = %(name)s AND NOT deleted;

-- name: trash_held
-- What the trash still holds in a database (tables and column values it may restore, or is busy with).
SELECT count(*) FROM rm_trash WHERE database_name = %(name)s AND status IN ('trashed', 'restoring', 'purging');

-- name: lock_registered_databases
SELECT name FROM rm_databases ORDER BY name FOR UPDATE;
