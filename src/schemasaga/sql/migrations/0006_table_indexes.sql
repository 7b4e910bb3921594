-- Tables gain indexes (in the order they were added), shown with their columns. Existing tables had
-- none that schemasaga knew of.
ALTER TABLE rm_tables ADD COLUMN indexes jsonb NOT NULL DEFAULT '[]';
