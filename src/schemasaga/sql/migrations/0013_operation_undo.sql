-- Undo (POST /v1/operations/{id}/undo): an undo is an operation that names the one it undoes (undoes,
-- from its change's event), and an operation undone names the undo that completed (undone_by, set when
-- the undo's outcome is confirmed). Both rebuild from the events.
ALTER TABLE rm_operations ADD COLUMN undoes uuid;
ALTER TABLE rm_operations ADD COLUMN undone_by uuid;
