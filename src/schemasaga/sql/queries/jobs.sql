-- Every query of procrastinate's job table that is not procrastinate's own; the jobs package runs these.

-- name: start_operation
-- A saga job's start, in one statement (one round trip, committed alone): unless another job of the
-- operation waits for its backoff (a retry deferred with a delay; only asked with a job id), the
-- operation is marked running in the read model (not an event: it says nothing about the schema; a
-- rebuilt operation is pending until its job runs) and its starts counted (the first start of a create
-- knows that a table already there is not its own). Answers whether a retry waits, and the starts
-- (NULL: nothing was started).
WITH retry AS (
    SELECT 1 FROM procrastinate_jobs
    WHERE %(job_id)s::bigint IS NOT NULL
      AND status = 'todo' AND task_name = %(task_name)s AND id <> %(job_id)s::bigint
      AND args ->> 'operation_id' = %(operation_id)s::text AND scheduled_at > now()
    LIMIT 1
), started AS (
    UPDATE rm_operations
    SET status = 'running', starts = starts + 1
    WHERE operation_id = %(operation_id)s::uuid AND status IN ('pending', 'running')
      AND NOT EXISTS (SELECT 1 FROM retry)
    RETURNING starts
)
SELECT EXISTS (SELECT 1 FROM retry) AS retry_scheduled, (SELECT starts FROM started) AS starts;

-- name: stuck_operations
-- Operations not finished whose table has no job waiting or running: nothing will ever finish them.
SELECT o.operation_id, o.table_id, o.kind, o.status, o.detail,
       o.failed_attempts + CASE WHEN o.status = 'pending' THEN 0 ELSE 1 END AS attempts,
       o.steps_done, o.last_error, o.accepted_seq,
       o.created_at, o.updated_at, o.finished_at, o.undoes, o.undone_by
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

-- name: queue_stats
-- The queue at a glance, for /metrics: jobs ready, scheduled for later, running, and how long the oldest
-- ready job has waited (since its deferral, or since its scheduled time). Both reads use the partial
-- indexes on waiting and running jobs; the age looks at one job and its 'deferred' event.
SELECT
    count(*) FILTER (WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())) AS ready,
    count(*) FILTER (WHERE status = 'todo' AND scheduled_at > now()) AS scheduled,
    count(*) FILTER (WHERE status = 'doing') AS doing,
    coalesce((
        SELECT extract(epoch FROM now() - coalesce(
            j.scheduled_at,
            (SELECT min(e.at) FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'deferred')
        ))
        FROM procrastinate_jobs j
        WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
        ORDER BY j.id
        LIMIT 1
    ), 0) AS oldest_ready_age
FROM procrastinate_jobs
WHERE status IN ('todo', 'doing');

-- name: queue_size_against_statistics
-- How many jobs the table holds now, and how many the planner's statistics believe it holds (as of its
-- last ANALYZE or VACUUM; -1 when never analyzed, read as 0). The count reads the whole table, which the
-- worker keeps small by deleting finished jobs.
SELECT (SELECT count(*) FROM procrastinate_jobs) AS rows,
       greatest(reltuples, 0)::bigint AS analyzed_rows
FROM pg_class WHERE oid = 'procrastinate_jobs'::regclass;

-- name: analyze_queue
-- New statistics for the job-fetch query's plan; SKIP_LOCKED: another worker analyzing it already will do.
ANALYZE (SKIP_LOCKED) procrastinate_jobs;

-- name: claim_job
-- One job, by id, marked running under a worker when procrastinate's fetch would give it to that worker:
-- still waiting, due, and first of its lock (no job of the lock running, none waiting ahead of it:
-- the conditions of procrastinate_fetch_job_v2, for one id instead of the first ready job). A fetch
-- that locked the row first leaves it running (the status test then fails); one that comes after
-- finds it running. The unique index on a running job's lock stops the rest.
UPDATE procrastinate_jobs AS jobs
SET status = 'doing', worker_id = %(worker_id)s
WHERE jobs.id = %(job_id)s
  AND jobs.status = 'todo'
  AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
  AND NOT EXISTS (
      SELECT 1 FROM procrastinate_jobs AS other
      WHERE jobs.lock IS NOT NULL
        AND other.lock = jobs.lock
        AND (
            other.status = 'doing'
            OR (other.status = 'todo'
                AND (other.priority > jobs.priority OR (other.priority = jobs.priority AND other.id < jobs.id)))
        )
  )
RETURNING jobs.id, jobs.status, jobs.task_name, jobs.priority, jobs.lock, jobs.queueing_lock, jobs.args,
          jobs.scheduled_at, jobs.queue_name, jobs.attempts, jobs.worker_id;
