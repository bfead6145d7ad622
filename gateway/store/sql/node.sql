-- The huvudman node's own storage (schema huvudman_node; gateway/store/node.py).

-- name: store_copies
-- One opened batch in one statement (its own transaction). Returns the event ids inserted now;
-- any other id of the batch was already stored (`duplicate`). Readings are stored due for the
-- FHIR server (fhir_state, migration 0002).
INSERT INTO huvudman_node.copy (event_id, huvudman, measured_at, kind, event_type, lane,
                                content, assignment_ids, subjects, routed_at, fhir_state)
SELECT t.event_id, $1, t.measured_at, t.kind, t.event_type, t.lane, t.content::jsonb,
       ARRAY(SELECT (s ->> 'assignment_id')::uuid
             FROM jsonb_array_elements(t.subjects::jsonb) s),
       t.subjects::jsonb, t.routed_at,
       CASE WHEN t.event_type = 'reading' THEN 'pending' END
FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[])
     AS t(event_id, measured_at, kind, event_type, lane, content, subjects, routed_at)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- name: store_subjects
-- Subject references learned from `subject` lines (format 2), each opened for its assignment
-- by the node's key; a later one for the same assignment replaces it (each copy is checked
-- against the digest it was sealed with, so a replaced one cannot open older copies wrongly).
INSERT INTO huvudman_node.subject (assignment_id, huvudman, digest, subject_ref)
SELECT t.assignment_id, $1, t.digest, t.subject_ref
FROM unnest($2::uuid[], $3::bytea[], $4::text[]) AS t(assignment_id, digest, subject_ref)
ON CONFLICT (assignment_id) DO UPDATE SET digest = excluded.digest,
                                          subject_ref = excluded.subject_ref;

-- name: subjects
SELECT assignment_id, digest, subject_ref FROM huvudman_node.subject
WHERE huvudman = $1 AND assignment_id = ANY($2::uuid[]);

-- name: ping
SELECT 1;

-- name: fhir_claim
-- Due readings for the FHIR server, leased (next_at moved past the longest cycle) so a second
-- node process skips them and a crashed one's claims come back by themselves.
WITH due AS (
    SELECT event_id FROM huvudman_node.copy
    WHERE fhir_state = 'pending' AND fhir_next_at <= now()
    ORDER BY fhir_next_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
UPDATE huvudman_node.copy c
SET fhir_next_at = now() + $2::interval, fhir_attempts = c.fhir_attempts + 1
FROM due WHERE c.event_id = due.event_id
RETURNING c.event_id, c.measured_at, c.content::text AS content, c.subjects::text AS subjects,
          c.fhir_attempts;

-- name: fhir_settle
-- One statement per batch: done, dead, or pending again after its backoff ('retry').
UPDATE huvudman_node.copy c
SET fhir_state = CASE s.outcome WHEN 'retry' THEN 'pending' ELSE s.outcome END,
    fhir_next_at = CASE s.outcome WHEN 'retry' THEN now() + make_interval(secs => s.delay_s)
                   ELSE c.fhir_next_at END,
    fhir_status = s.status, fhir_reason = s.reason,
    fhir_done_at = CASE s.outcome WHEN 'retry' THEN NULL ELSE now() END
FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::integer[], $5::text[])
     AS s(event_id, outcome, delay_s, status, reason)
WHERE c.event_id = s.event_id AND c.fhir_state = 'pending';

-- name: fhir_release
-- A stopping forwarder gives back what it had claimed: due again now, the attempt not counted.
UPDATE huvudman_node.copy
SET fhir_next_at = now(), fhir_attempts = greatest(fhir_attempts - 1, 0)
WHERE event_id = ANY($1::uuid[]) AND fhir_state = 'pending';

-- name: fhir_counts
SELECT count(*) FILTER (WHERE fhir_state = 'pending') AS pending,
       count(*) FILTER (WHERE fhir_state = 'dead') AS dead,
       extract(epoch FROM now() - min(received_at) FILTER (WHERE fhir_state = 'pending'))::float8
           AS oldest_s
FROM huvudman_node.copy WHERE fhir_state IN ('pending', 'dead');

-- name: fhir_dead
-- Readings the FHIR server refused for good, oldest first: ids, kinds, times, status and the
-- letters-only reason; never content.
SELECT event_id, kind, measured_at, fhir_status, fhir_reason, fhir_attempts, fhir_done_at
FROM huvudman_node.copy
WHERE huvudman = $1 AND fhir_state = 'dead'
ORDER BY fhir_done_at, event_id LIMIT $2;

-- name: fhir_replay
-- Dead readings back to pending, due now, attempts reset: one ($2) or all ($2 NULL).
UPDATE huvudman_node.copy
SET fhir_state = 'pending', fhir_attempts = 0, fhir_next_at = now(), fhir_done_at = NULL
WHERE huvudman = $1 AND fhir_state = 'dead' AND ($2::uuid IS NULL OR event_id = $2)
RETURNING event_id;
