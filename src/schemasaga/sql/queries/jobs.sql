-- Every query of procrastinate's job table that is not procrastinate's own; the jobs package runs these.

-- name: retry_scheduled
-- Another job of the operation waits for its backoff to end: a retry deferred with a delay.
SELECT 1 FROM procrastinate_jobs
WHERE status = 'todo' AND task_name = %(task_name)s AND id <> %(job_id)s
  AND args ->> 'operation_id' = %(operation_id)s AND scheduled_at > now()
LIMIT 1;

-- name: stuck_operations
-- Operations not finished whose table has no job waiting or running: nothing will ever finish them.
SELECT o.operation_id, o.table_id, o.kind, o.status, o.detail,
       o.failed_attempts + CASE WHEN o.status = 'pending' THEN 0 ELSE 1 END AS attempts,
       o.steps_done, o.last_error, o.accepted_seq,
       o.created_at, o.updated_at, o.finished_at
FROM rm_operations o
WHERE o.status IN ('pending', 'running')
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs j
      WHERE j.lock = 'table:' || o.table_id::text AND j.status IN ('todo', 'doing')
  )
ORDER BY o.accepted_seq;

-- name: held_jobs
-- The jobs the queue says one worker is running.
SELECT id FROM procrastinate_jobs WHERE status = 'doing' AND worker_id = %(worker_id)s;
