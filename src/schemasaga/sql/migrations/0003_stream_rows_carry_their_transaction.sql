-- Each stream row records the transaction that added the event to the stream, so that reads of a stream
-- at a moment cut it only between transactions. Rows from before this migration take their event's
-- transaction: right for appends; for links, whose own transaction was not recorded, the best guess.
ALTER TABLE event_store_events_in_streams ADD COLUMN tx_id xid8 NOT NULL DEFAULT '0';
UPDATE event_store_events_in_streams s SET tx_id = e.tx_id
FROM event_store_events e WHERE e.event_id = s.event_id;
ALTER TABLE event_store_events_in_streams ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id();
