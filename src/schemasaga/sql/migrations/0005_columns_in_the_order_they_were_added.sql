-- rm_tables.columns becomes a JSON array, in the order the columns were added: a jsonb object keeps
-- its keys in its own order (shorter keys first), which is what the API showed. Each table's columns
-- are put in the order the table's events first named them (the creation's columns first, in their
-- order); `schemasaga projections rebuild` gives the exact order of the events, adoptions included.
UPDATE rm_tables t
SET columns = coalesce((
    SELECT jsonb_agg(col.value ORDER BY seen.first NULLS LAST, col.key)
    FROM jsonb_each(t.columns) AS col
    LEFT JOIN LATERAL (
        SELECT min(e.position * 100000 + coalesce(c.ord, 0)) AS first
        FROM event_store_events_in_streams s
        JOIN event_store_events e ON e.event_id = s.event_id
        LEFT JOIN LATERAL jsonb_array_elements(
            CASE WHEN e.event_type IN ('TableCreated', 'TableSchemaAdopted') THEN e.data -> 'columns'
                 ELSE '[]'::jsonb END
        ) WITH ORDINALITY AS c (value, ord) ON true
        WHERE s.stream = 'Table$' || t.table_id::text
          AND (c.value ->> 'name' = col.key
               OR (e.event_type = 'TableChanged' AND e.data -> 'column' ->> 'name' = col.key))
    ) AS seen ON true
), '[]'::jsonb)
WHERE jsonb_typeof(t.columns) = 'object';
