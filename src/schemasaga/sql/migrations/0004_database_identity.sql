-- Which physical database a registration reaches, as its server said (NULL: not known yet, as for
-- every database registered before this migration); no two registrations may hold the same one.
ALTER TABLE rm_databases ADD COLUMN identity text;
CREATE UNIQUE INDEX rm_databases_identity_idx ON rm_databases (identity);
