-- Named queries on procrastinate's job table (schemasaga.jobs, schemasaga.sagas).

-- name: retry_scheduled
-- Another job of the operation waits for its backoff to end: a retry deferred with a delay.
SELECT 1 FROM procrastinate_jobs
WHERE status = 'todo' AND task_name = %(task_name)s AND id <> %(job_id)s
  AND args ->> 'operation_id' = %(operation_id)s AND scheduled_at > now()
LIMIT 1;
