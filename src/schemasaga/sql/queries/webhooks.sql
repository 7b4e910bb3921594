-- Webhooks (services/webhooks.py, coredb/webhooks.py).

-- name: insert_webhook
INSERT INTO rm_webhooks (webhook_id, url_encrypted, events, secret_encrypted, key_id, dispatched_to)
VALUES (%(webhook_id)s, %(url_encrypted)s, %(events)s, %(secret_encrypted)s, %(key_id)s, %(dispatched_to)s)
RETURNING created_at;

-- name: delete_webhook
UPDATE rm_webhooks SET deleted_at = now() WHERE webhook_id = %(webhook_id)s AND deleted_at IS NULL
RETURNING deleted_at;

-- name: cancel_deliveries
UPDATE webhook_deliveries SET status = 'cancelled', next_attempt_at = NULL
WHERE webhook_id = %(webhook_id)s AND status = 'pending';

-- name: list_webhooks
SELECT webhook_id, url_encrypted, events, created_at FROM rm_webhooks
WHERE deleted_at IS NULL ORDER BY created_at, webhook_id;

-- name: get_webhook
SELECT webhook_id, url_encrypted, events, created_at FROM rm_webhooks
WHERE webhook_id = %(webhook_id)s AND deleted_at IS NULL;

-- name: webhook_exists
SELECT deleted_at FROM rm_webhooks WHERE webhook_id = %(webhook_id)s;

-- name: deliveries
SELECT position, event_id, event_type, stream, status, attempts, last_status_code, last_error,
       next_attempt_at, delivered_at, created_at
FROM webhook_deliveries WHERE webhook_id = %(webhook_id)s
ORDER BY position DESC LIMIT %(limit)s;

-- name: any_live
SELECT 1 FROM rm_webhooks WHERE deleted_at IS NULL LIMIT 1;

-- name: to_dispatch
-- The live webhooks behind the settled position; another process dispatching one skips it.
SELECT webhook_id, events, dispatched_to FROM rm_webhooks
WHERE deleted_at IS NULL AND dispatched_to < %(settled)s
ORDER BY webhook_id
FOR UPDATE SKIP LOCKED;

-- name: insert_delivery
INSERT INTO webhook_deliveries (webhook_id, position, event_id, event_type, stream)
VALUES (%(webhook_id)s, %(position)s, %(event_id)s, %(event_type)s, %(stream)s)
ON CONFLICT (webhook_id, position) DO NOTHING
RETURNING position;

-- name: advance
UPDATE rm_webhooks SET dispatched_to = %(position)s WHERE webhook_id = %(webhook_id)s;

-- name: for_delivery
SELECT d.status, d.attempts, d.created_at, w.url_encrypted, w.secret_encrypted, w.deleted_at
FROM webhook_deliveries d JOIN rm_webhooks w USING (webhook_id)
WHERE d.webhook_id = %(webhook_id)s AND d.position = %(position)s;

-- name: record_attempt
UPDATE webhook_deliveries
SET attempts = attempts + 1, status = %(status)s, last_status_code = %(status_code)s,
    last_error = %(error)s, next_attempt_at = %(next_attempt_at)s,
    delivered_at = CASE WHEN %(status)s = 'delivered' THEN now() END
WHERE webhook_id = %(webhook_id)s AND position = %(position)s AND status = 'pending';

-- name: lock_live_webhooks
SELECT webhook_id, url_encrypted, secret_encrypted, key_id FROM rm_webhooks
WHERE deleted_at IS NULL ORDER BY webhook_id FOR UPDATE;

-- name: rotate_webhook
UPDATE rm_webhooks SET url_encrypted = %(url_encrypted)s, secret_encrypted = %(secret_encrypted)s,
    key_id = %(key_id)s
WHERE webhook_id = %(webhook_id)s;

-- name: high_position
SELECT coalesce(pg_sequence_last_value('event_store_events_position_seq'::regclass), 0);
