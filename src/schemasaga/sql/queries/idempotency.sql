-- name: claim_key
-- Take the key in the caller's transaction; an expired row is taken over. No row back: a live row of
-- another request holds it (a concurrent insert waits for that request's transaction first).
INSERT INTO idempotency_keys (principal, key, fingerprint, operation_id, expires_at)
VALUES (%(principal)s, %(key)s, %(fingerprint)s, %(operation_id)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (principal, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, operation_id = EXCLUDED.operation_id, status = NULL,
    headers = NULL, body = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
WHERE idempotency_keys.expires_at <= now()
RETURNING 1;

-- name: find_key
SELECT fingerprint, operation_id, status, headers, body
FROM idempotency_keys
WHERE principal = %(principal)s AND key = %(key)s AND expires_at > now();

-- name: record_answer
-- The answer of the request that holds the key (its unit of work wrote the row), or of a request that
-- took the key only now (a route that appends no table event: a token, a registration, a dry run).
INSERT INTO idempotency_keys (principal, key, fingerprint, status, headers, body, expires_at)
VALUES (%(principal)s, %(key)s, %(fingerprint)s, %(status)s, %(headers)s, %(body)s,
        now() + make_interval(secs => %(ttl)s))
ON CONFLICT (principal, key) DO UPDATE
SET status = EXCLUDED.status, headers = EXCLUDED.headers, body = EXCLUDED.body
WHERE idempotency_keys.fingerprint = EXCLUDED.fingerprint AND idempotency_keys.status IS NULL;

-- name: purge_expired
DELETE FROM idempotency_keys WHERE expires_at <= now();
