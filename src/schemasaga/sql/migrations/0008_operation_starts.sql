-- How many times a worker has started each operation: a create's first start that finds the table
-- already there knows that schemasaga did not make it (see the saga runner), and refuses it rather than
-- taking it over. Not an event (it says nothing about the schema); a rebuilt read model starts at 0.
ALTER TABLE rm_operations ADD COLUMN starts integer NOT NULL DEFAULT 0;
