-- Every list is keyset-paged; these make the pages index scans on a filled core database.
-- GET /v1/tables?database=... pages through one database's live tables in table_id order, and
-- GET /v1/databases counts each database's live tables: both read only that database's index entries.
CREATE INDEX rm_tables_database_live_idx ON rm_tables (database_name, table_id) WHERE NOT deleted;
