-- The live event feed (GET /v1/events/stream) delivers the global log in position order, only up to a
-- position below which nothing can still appear. Its reader takes the sequence's last value S, then a
-- snapshot: every position <= S was taken by a transaction whose xid is below that snapshot's xmax once
-- a transaction's xid is assigned before its first position, which this default ensures (a bigserial's
-- nextval ran before the tx_id default assigned the xid, in column order). See services/feed.py.
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
