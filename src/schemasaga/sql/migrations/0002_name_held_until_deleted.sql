-- A table keeps its name until its deletion is confirmed, not only requested: a deletion may still
-- be rejected, and until it is confirmed the physical table is there. Rows written before keep the
-- old rule until `schemasaga projections rebuild`.
ALTER TABLE rm_tables ADD COLUMN holds_name boolean NOT NULL DEFAULT true;
UPDATE rm_tables SET holds_name = NOT deleted;
DROP INDEX rm_tables_live_name_idx;
CREATE UNIQUE INDEX rm_tables_live_name_idx ON rm_tables (database_name, lower(name)) WHERE holds_name;
