-- The console tells a table whose creation was rejected from a deleted one by its creation's operation;
-- the few rejected creations, indexed by table, keep that a lookup on a filled core database.
CREATE INDEX rm_operations_rejected_creation_idx ON rm_operations (table_id)
    WHERE kind = 'create_table' AND status = 'rejected';
