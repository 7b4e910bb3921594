-- Cheaper appends (issue 12): event_store_events_created_at_idx, a btree on (created_at, position), took an
-- entry in every append (one of its eight index entries) and served no query of the service: only
-- EventStore.read_all's newer_than/older_than filters read created_at of this table, and no route, view or
-- job passes them (reads of a stream at a moment use event_store_events_in_streams.created_at, on its
-- primary key). A BRIN index keeps those filters indexed at almost no cost per append: events are only
-- ever appended, with created_at from clock_timestamp(), so the heap is in created_at order and each range
-- of pages has a narrow span; a new row in a range not summarized yet costs a look at the range map, and
-- (auto)vacuum summarizes the ranges as the table grows.
DROP INDEX event_store_events_created_at_idx;
CREATE INDEX event_store_events_created_at_brin ON event_store_events USING brin (created_at);
