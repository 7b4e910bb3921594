-- The live event feed (GET /v1/events/stream) delivers the global log in position order, only up to a
-- position below which nothing can still appear. Its reader takes the sequence's last value S, then the
-- running transactions: every position <= S was taken by a transaction that has ended or is among them,
-- once a transaction's xid is assigned before its first position, which this default ensures (a
-- bigserial's nextval ran before the tx_id default assigned the xid, in column order). services/feed.py.
CREATE FUNCTION event_store_next_position() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN nextval('event_store_events_position_seq');
END
$$;
ALTER TABLE event_store_events ALTER COLUMN position SET DEFAULT event_store_next_position();

-- Followers of the feed wake on this channel (one notice per appending transaction: PostgreSQL folds the
-- identical notices of a transaction into one) and poll as well, so a missed notice only delays.
CREATE FUNCTION event_store_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('schemasaga_events_appended', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER event_store_events_appended_notify
    AFTER INSERT ON event_store_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store_notify_appended();

-- Webhooks: the read model of the Webhook$<id> streams (URL and secret only encrypted, like BYODB URLs),
-- with dispatched_to, the position up to which the log's events are queued as its deliveries (the
-- dispatcher's progress, not rebuilt from the events). Each delivery is a row here and a job.
CREATE TABLE rm_webhooks (
    webhook_id        uuid        PRIMARY KEY,
    url_encrypted     text        NOT NULL,
    events            text[]      NOT NULL,
    secret_encrypted  text        NOT NULL,
    key_id            text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    dispatched_to     bigint      NOT NULL
);
CREATE TABLE webhook_deliveries (
    webhook_id        uuid        NOT NULL,
    position          bigint      NOT NULL,
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,
    stream            text,
    -- pending, delivered, failed (retries exhausted) or cancelled (the webhook was deleted)
    status            text        NOT NULL DEFAULT 'pending',
    attempts          integer     NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error        text,
    next_attempt_at   timestamptz,
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook_id, position)
);
