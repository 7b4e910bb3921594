-- The rm_databases read model and the queries of the database registry.

-- name: upsert_database
INSERT INTO rm_databases (name, engine, url_encrypted, key_id, display, source, status, server_version,
                          version, created_at, updated_at, identity)
VALUES (%(name)s, %(engine)s, %(url_encrypted)s, %(key_id)s, %(display)s, %(source)s, %(status)s,
        %(server_version)s, %(version)s, %(created_at)s, %(updated_at)s, %(identity)s)
ON CONFLICT (name) DO UPDATE
SET engine = EXCLUDED.engine, url_encrypted = EXCLUDED.url_encrypted, key_id = EXCLUDED.key_id,
    display = EXCLUDED.display, source = EXCLUDED.source, status = EXCLUDED.status,
    server_version = EXCLUDED.server_version, version = EXCLUDED.version,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, identity = EXCLUDED.identity;

-- name: delete_database
DELETE FROM rm_databases WHERE name = %(name)s;

-- name: truncate_databases
TRUNCATE rm_databases;

-- name: database_streams
SELECT DISTINCT stream FROM event_store_events_in_streams WHERE stream LIKE 'Database$%%' ORDER BY stream;

-- name: list_databases
SELECT d.name, d.engine, d.display, d.source, d.status, d.server_version, d.key_id, d.version,
       d.created_at, d.updated_at,
       (SELECT count(*) FROM rm_tables t WHERE t.database_name = d.name AND NOT t.deleted) AS live_tables
FROM rm_databases d
WHERE (%(name)s::text IS NULL OR d.name = %(name)s)
ORDER BY d.name;

-- name: catalog_entries
SELECT name, engine, url_encrypted FROM rm_databases ORDER BY name;

-- name: identities
-- The registered databases of one engine, to tell whether a new one is one of them.
SELECT name, url_encrypted, identity FROM rm_databases WHERE engine = %(engine)s ORDER BY name;

-- name: holding_identity
SELECT name FROM rm_databases WHERE identity = %(identity)s;

-- name: encrypted_for_update
SELECT name, url_encrypted, key_id FROM rm_databases ORDER BY name FOR UPDATE;

-- name: lock_database
-- Held while unregistering; a command creating a table in the database should take it FOR SHARE.
SELECT name FROM rm_databases WHERE name = %(name)s FOR UPDATE;

-- name: require_database
SELECT name FROM rm_databases WHERE name = %(name)s FOR SHARE;

-- name: live_tables
SELECT count(*) FROM rm_tables WHERE database_name = %(name)s AND NOT deleted;
