-- The current core schema, applied as a whole to a fresh database. Upgrades of existing
-- databases go through sql/migrations/; tests/integration/test_migrations.py proves both give
-- the same schema. Procrastinate's own schema is installed beside it by `schemasaga db upgrade`.

-- Event store ---------------------------------------------------------------------------------

CREATE TABLE event_store_events (
    position        bigserial   PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    valid_at        timestamptz,
    -- The writing transaction. Followers of the global log read in (tx_id, position) order and
    -- only below the oldest transaction still running, so a late commit is never skipped.
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX event_store_events_type_idx ON event_store_events (event_type, position);
-- Only read_all's newer_than/older_than read created_at here: a BRIN serves them (migration 0019).
CREATE INDEX event_store_events_created_at_brin ON event_store_events USING brin (created_at);
CREATE INDEX event_store_events_tx_idx ON event_store_events (tx_id, position);
CREATE INDEX event_store_events_correlation_idx
    ON event_store_events ((metadata ->> 'correlation_id'), position);

-- No foreign key to event_store_events: events are never deleted, an append inserts both rows in
-- one statement and a link checks that its events exist; the key's trigger (a FOR KEY SHARE lock on
-- the event row) cost about a tenth of an append. (event_id, stream) serves both the uniqueness of an
-- event in a stream and the look-up of an event's streams.
CREATE TABLE event_store_events_in_streams (
    stream      text        NOT NULL,
    version     integer     NOT NULL,
    event_id    uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The transaction that added the event to the stream (a link's own, not the event's): reads of a
    -- stream at a moment cut it only between transactions (queries/eventstore.sql, read_stream_*).
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (stream, version),
    CONSTRAINT event_store_events_in_streams_event_stream_key UNIQUE (event_id, stream)
);

-- The follower's horizon: the oldest transaction of the current snapshot still running that may be
-- writing to this database, else the snapshot's xmax. Events of transactions at or above it may still
-- appear, so followers read only below it. pg_snapshot_xmin alone would count every database of the
-- cluster: one long transaction on another database (a BYODB in the same cluster, a test run) would
-- hold every follower back. A running xid is skipped only when pg_stat_activity, read after the
-- snapshot, shows it held by a backend of another database; anything unknown counts as possibly ours.
CREATE FUNCTION event_store_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x
         WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                           WHERE a.backend_xid = x::xid AND a.datname IS DISTINCT FROM current_database())
         ORDER BY x LIMIT 1),
        pg_snapshot_xmax(pg_current_snapshot()))
$$;

-- Positions are taken after the transaction's xid is assigned (migration 0014; services/feed.py says why):
-- a SQL function, inlined into the insert as a CASE, whose condition runs before its result (migration 0017).
CREATE FUNCTION event_store_next_position() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('event_store_events_position_seq') END
$$;
ALTER TABLE event_store_events ALTER COLUMN position SET DEFAULT event_store_next_position();

-- Followers of the feed wake on this channel (one notice per appending transaction: PostgreSQL folds the
-- identical notices of a transaction into one) and poll as well, so a missed notice only delays. An append
-- notifies only when a follower may listen (a NOTIFY makes commits cluster-wide one at a time): listeners
-- hold the advisory lock (-690804931, 1) shared; migration 0017 gives the whole protocol.
CREATE FUNCTION event_store_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- In one expression, so that nothing (a cancel, say) can come between taking (…, 1) and letting it go.
    IF (CASE WHEN pg_try_advisory_xact_lock_shared(-690804931, 2)
             THEN CASE WHEN pg_try_advisory_lock(-690804931, 1) THEN pg_advisory_unlock(-690804931, 1) END
        END) THEN
        RETURN NULL;  -- nobody listens, and no listener can start before this transaction ends
    END IF;
    PERFORM pg_notify('schemasaga_events_appended', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER event_store_events_appended_notify
    AFTER INSERT ON event_store_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store_notify_appended();

CREATE TABLE event_store_snapshots (
    stream      text        NOT NULL,
    version     integer     NOT NULL,
    state       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (stream, version)
);

-- Read models (projections), rebuildable from the events ---------------------------------------

CREATE TABLE rm_tables (
    table_id        uuid        PRIMARY KEY,
    database_name   text        NOT NULL,
    name            text        NOT NULL,
    synced          boolean     NOT NULL,
    exists_         boolean     NOT NULL,
    deleted         boolean     NOT NULL DEFAULT false,
    -- The intended columns, in the order they were added (a JSON array of column objects).
    columns         jsonb       NOT NULL,
    version         integer     NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- Table.holds_name: not rejected, and not deleted for good (a pending deletion still holds it).
    holds_name      boolean     NOT NULL DEFAULT true,
    -- The intended indexes, in the order they were added (a JSON array of index objects).
    indexes         jsonb       NOT NULL DEFAULT '[]',
    -- A deleted table whose rows are in the trash (restorable): /v1/tables lists it only when asked to.
    trashed         boolean     NOT NULL DEFAULT false
);
-- One table per name per database, from its creation until its creation is rejected or its
-- deletion confirmed.
CREATE UNIQUE INDEX rm_tables_live_name_idx ON rm_tables (database_name, lower(name)) WHERE holds_name;
-- The live tables of one database: its pages of GET /v1/tables, its count in GET /v1/databases.
CREATE INDEX rm_tables_database_live_idx ON rm_tables (database_name, table_id) WHERE NOT deleted;

-- The trash (issue 9): deleted tables and removed columns kept restorable until their retention ends.
-- One row per trash entry (its id: the operation that trashed it), rebuildable from the table's events.
CREATE TABLE rm_trash (
    trash_id        uuid        PRIMARY KEY,
    table_id        uuid        NOT NULL,
    database_name   text        NOT NULL,
    -- "table" (the table renamed to physical_name) or "column" (its values copied to physical_name)
    kind            text        NOT NULL,
    origin_table    text        NOT NULL,
    origin_column   text,
    physical_name   text        NOT NULL,
    -- trashed, restoring, purging, restored, purged
    status          text        NOT NULL,
    trashed_at      timestamptz NOT NULL,
    purge_at        timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX rm_trash_database_idx ON rm_trash (database_name, trashed_at);
-- The periodic purge reads only what is due.
CREATE INDEX rm_trash_due_idx ON rm_trash (purge_at) WHERE status = 'trashed';

CREATE TABLE rm_operations (
    operation_id    uuid        PRIMARY KEY,
    table_id        uuid        NOT NULL,
    kind            text        NOT NULL,
    status          text        NOT NULL,
    detail          jsonb       NOT NULL DEFAULT '{}',
    -- Attempts that failed and are retried (from SagaAttemptFailed); `attempts` adds the one that
    -- runs or ran (see the queries), so the read model stays rebuildable from the events.
    failed_attempts integer     NOT NULL DEFAULT 0,
    steps_done      jsonb       NOT NULL DEFAULT '[]',
    last_error      text,
    accepted_seq    bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    -- Times a worker started it (not an event; 0 after a rebuild): see 0008_operation_starts.sql.
    starts          integer     NOT NULL DEFAULT 0,
    -- The operation this one undoes, and the undo that undid this one once it completed (0013).
    undoes          uuid,
    undone_by       uuid
);
CREATE INDEX rm_operations_table_idx ON rm_operations (table_id, accepted_seq);
CREATE INDEX rm_operations_open_idx ON rm_operations (status) WHERE status IN ('pending', 'running');
-- The newest operations first (GET /v1/operations) without sorting them all.
CREATE INDEX rm_operations_accepted_seq_idx ON rm_operations (accepted_seq);
-- The rejected creations, by table: a table whose creation was rejected is told from a deleted one.
CREATE INDEX rm_operations_rejected_creation_idx ON rm_operations (table_id)
    WHERE kind = 'create_table' AND status = 'rejected';

-- Registered BYODBs (stream Database$<name>). The URL is stored only encrypted (Fernet, key_id says
-- which key); display holds its non-secret parts (driver, host, port, database, username).
-- identity says which physical database it is (a digest its server gave; NULL: not known), and no two
-- registrations may hold the same one, even when registered at the same instant.
CREATE TABLE rm_databases (
    name            text        PRIMARY KEY,
    engine          text        NOT NULL,
    url_encrypted   text        NOT NULL,
    key_id          text        NOT NULL,
    display         jsonb       NOT NULL,
    source          text        NOT NULL,
    status          text        NOT NULL,
    server_version  text,
    version         integer     NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    identity        text
);
CREATE UNIQUE INDEX rm_databases_identity_idx ON rm_databases (identity);

-- API tokens. A token reads ssg_<lookup_id>_<secret>: the row is found by its lookup_id, and the
-- SHA-256 of the whole token compared with secret_hash; the token itself is never stored. Revoked
-- tokens stay (their name is not given again), so the events that name them keep meaning one token.
CREATE TABLE api_tokens (
    name        text        PRIMARY KEY,
    lookup_id   text        NOT NULL UNIQUE,
    secret_hash text        NOT NULL,
    scope       text        NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    databases   text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Idempotent requests (the Idempotency-Key header). A key is its caller's (principal: the token's name,
-- or '-' when no token is required) and answers one request: the fingerprint of its method, path, query
-- and body. A change's row is written in the transaction that appends its events (operation_id set), so
-- that a retry, even a concurrent one, finds it; the answer (status, headers, body) is stored once it is
-- made. Kept 24 hours (expires_at): expired rows are purged, and a new request may take their key.
CREATE TABLE idempotency_keys (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    fingerprint   text        NOT NULL,
    operation_id  uuid,
    status        integer,
    headers       jsonb,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- ?wait=SECONDS: the API hears of an operation that finished (completed or rejected) on one LISTEN
-- connection per process rather than polling; the payload is the operation's id.
CREATE FUNCTION schemasaga_notify_operation_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('schemasaga_operation_finished', NEW.operation_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER rm_operations_finished_notify
    AFTER INSERT OR UPDATE OF status ON rm_operations
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'rejected'))
    EXECUTE FUNCTION schemasaga_notify_operation_finished();

-- Webhooks: the read model of the Webhook$<id> streams (URL and secret only encrypted, like BYODB URLs),
-- with dispatched_to, the position up to which the log's events are queued as its deliveries (the
-- dispatcher's progress, not rebuilt from the events). Each delivery is a row here and a job.
CREATE TABLE rm_webhooks (
    webhook_id        uuid        PRIMARY KEY,
    url_encrypted     text        NOT NULL,
    events            text[]      NOT NULL,
    secret_encrypted  text        NOT NULL,
    key_id            text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    dispatched_to     bigint      NOT NULL
);
CREATE TABLE webhook_deliveries (
    webhook_id        uuid        NOT NULL,
    position          bigint      NOT NULL,
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,
    stream            text,
    -- pending, delivered, failed (retries exhausted) or cancelled (the webhook was deleted)
    status            text        NOT NULL DEFAULT 'pending',
    attempts          integer     NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error        text,
    next_attempt_at   timestamptz,
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook_id, position)
);

-- Bookkeeping -----------------------------------------------------------------------------------

CREATE TABLE schemasaga_migrations (
    name        text        PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
