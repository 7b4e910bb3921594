-- Cheaper appends (issue 12). Two pieces of migration 0014 cost an append more than they need to:
--
-- 1. The position default called a plpgsql function per row. The same order (the xid first, then the
--    position) as a SQL function, which the planner inlines into the insert as a CASE expression: its
--    condition is evaluated before its result, so the xid is still assigned before nextval runs.
-- 2. Every appending transaction notified the feed's channel, whether or not anything listened. A NOTIFY
--    takes a cluster-wide lock at commit and holds it through the commit's WAL flush, so notifying
--    transactions commit one at a time (no group commit among concurrent writers, and a wait for every
--    other database's notifying commit, procrastinate's included). Now an append notifies only when a
--    follower may be listening, as the advisory locks (-690804931, 1) and (-690804931, 2) tell
--    (-690804931 is hashtext('schemasaga_events_appended')):
--    - a listener holds (…, 1) shared for as long as it listens (coredb/feed.py, queries/feed.sql);
--    - an appending transaction that finds no listener holds (…, 2) shared until it ends, and does not
--      notify; one that cannot take (…, 2), or finds (…, 1) held, notifies;
--    - a new listener, after LISTEN and taking (…, 1), takes (…, 2) exclusively and lets it go: that
--      waits for every transaction that decided not to notify before it was there, after which it reads
--      (coredb/feed.py waits 1 s at most: the followers' poll finds a transaction left open).
--    So a listener hears of every later commit, and finds the earlier ones when it reads (or at its next
--    poll); no append waits on a lock for it (only "try" functions; a NOTIFY at worst, as before).
CREATE OR REPLACE FUNCTION event_store_next_position() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('event_store_events_position_seq') END
$$;

CREATE OR REPLACE FUNCTION event_store_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- In one expression, so that nothing (a cancel, say) can come between taking (…, 1) and letting it go.
    IF (CASE WHEN pg_try_advisory_xact_lock_shared(-690804931, 2)
             THEN CASE WHEN pg_try_advisory_lock(-690804931, 1) THEN pg_advisory_unlock(-690804931, 1) END
        END) THEN
        RETURN NULL;  -- nobody listens, and no listener can start before this transaction ends
    END IF;
    PERFORM pg_notify('schemasaga_events_appended', '');
    RETURN NULL;
END
$$;
