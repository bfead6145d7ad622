-- name: store_copies
-- One opened batch in one statement (its own transaction). Returns the event ids inserted now;
-- any other id of the batch was already stored (`duplicate`).
INSERT INTO huvudman_node.copy (event_id, huvudman, measured_at, kind, event_type, lane,
                                content, assignment_ids, subjects, routed_at)
SELECT t.event_id, $1, t.measured_at, t.kind, t.event_type, t.lane, t.content::jsonb,
       ARRAY(SELECT (s ->> 'assignment_id')::uuid
             FROM jsonb_array_elements(t.subjects::jsonb) s),
       t.subjects::jsonb, t.routed_at
FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[])
     AS t(event_id, measured_at, kind, event_type, lane, content, subjects, routed_at)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- name: ping
SELECT 1;
