-- name: insert_token
INSERT INTO api_tokens (name, lookup_id, secret_hash, scope, databases)
VALUES (%(name)s, %(lookup_id)s, %(secret_hash)s, %(scope)s, %(databases)s)
ON CONFLICT (name) DO NOTHING
RETURNING created_at;

-- name: list_tokens
-- Keyset-paged by name (the primary key): a page is an index range scan.
SELECT name, scope, databases, created_at, revoked_at FROM api_tokens
WHERE (%(after)s::text IS NULL OR name > %(after)s::text)
ORDER BY name
LIMIT %(limit)s;

-- name: find_token
SELECT name, secret_hash, scope, databases FROM api_tokens
WHERE lookup_id = %(lookup_id)s AND revoked_at IS NULL;

-- name: revoke_token
UPDATE api_tokens SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL
RETURNING revoked_at;

-- name: token_exists
SELECT revoked_at FROM api_tokens WHERE name = %(name)s;
