-- Idempotent requests (the Idempotency-Key header). A key is its caller's (principal: the token's name,
-- or '-' when no token is required) and answers one request: the fingerprint of its method, path, query
-- and body. A change's row is written in the transaction that appends its events (operation_id set), so
-- that a retry, even a concurrent one, finds it; the answer (status, headers, body) is stored once it is
-- made. Kept 24 hours (expires_at): expired rows are purged, and a new request may take their key.
CREATE TABLE idempotency_keys (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    fingerprint   text        NOT NULL,
    operation_id  uuid,
    status        integer,
    headers       jsonb,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- ?wait=SECONDS: the API hears of an operation that finished (completed or rejected) on one LISTEN
-- connection per process rather than polling; the payload is the operation's id.
CREATE FUNCTION schemasaga_notify_operation_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('schemasaga_operation_finished', NEW.operation_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER rm_operations_finished_notify
    AFTER INSERT OR UPDATE OF status ON rm_operations
    FOR EACH ROW WHEN (NEW.status IN ('completed', 'rejected'))
    EXECUTE FUNCTION schemasaga_notify_operation_finished();
