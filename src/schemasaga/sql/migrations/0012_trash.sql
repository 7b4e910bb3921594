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

-- A deleted table whose rows are in the trash (restorable): /v1/tables lists it only when asked to.
ALTER TABLE rm_tables ADD COLUMN trashed boolean NOT NULL DEFAULT false;
