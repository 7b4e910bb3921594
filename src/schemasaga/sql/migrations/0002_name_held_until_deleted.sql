-- A table keeps its name until its deletion is confirmed, not only requested: a deletion may still
-- be rejected, and until it is confirmed the physical table is there.
ALTER TABLE rm_tables ADD COLUMN holds_name boolean NOT NULL DEFAULT true;
UPDATE rm_tables t
SET holds_name = NOT t.deleted
    OR EXISTS (SELECT 1 FROM rm_operations o
               WHERE o.table_id = t.table_id AND o.kind = 'delete_table'
                 AND o.status IN ('pending', 'running'));
DROP INDEX rm_tables_live_name_idx;
CREATE UNIQUE INDEX rm_tables_live_name_idx ON rm_tables (database_name, lower(name)) WHERE holds_name;

-- The newest operations first (GET /v1/operations) without sorting them all.
CREATE INDEX rm_operations_accepted_seq_idx ON rm_operations (accepted_seq);
