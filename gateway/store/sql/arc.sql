-- Alarms to alarm centres (gateway/delivery/arc.py): leases, recovery, answers, incidents.

-- name: claim
-- Alarms to alarm centres whose lease ran out (the instance sending them stopped): up to $1,
-- for the receivers $2 this instance forwards to, not those it is already handling ($3),
-- leased for $4. With the relay's sealed copy and its wrapped data key.
WITH due AS (
    SELECT id FROM delivery
    WHERE state = 'pending' AND lane = 'alarm' AND target = 'arc' AND next_attempt_at <= now()
      AND receiver = ANY($2::text[]) AND NOT (event_id = ANY($3::uuid[]))
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE delivery d SET next_attempt_at = now() + $4::interval, attempts = attempts + 1
    FROM due WHERE d.id = due.id
    RETURNING d.*
)
SELECT c.id, c.event_id, c.measured_at, c.receiver, cp.envelope, k.key_id,
       k.huvudman AS key_owner, k.subject_pseudonym, k.epoch, k.recipient_key_id, k.suite,
       k.wrapped
FROM claimed c
LEFT JOIN event_copy cp ON cp.event_id = c.event_id AND cp.measured_at = c.measured_at
                       AND cp.recipient = 'hmc-alarm-relay'
LEFT JOIN data_key k ON k.key_id = cp.key_id;

-- name: extend_lease
-- The alarms this instance is still handling ($1 event ids, $2 receivers, pairwise) stay its own.
UPDATE delivery d SET next_attempt_at = now() + $3::interval
FROM unnest($1::uuid[], $2::text[]) AS t(event_id, receiver)
WHERE d.target = 'arc' AND d.state = 'pending' AND d.event_id = t.event_id
  AND d.receiver = t.receiver;

-- name: done
-- An alarm centre accepted the alarm at $4 ($3 requests were sent on the way).
UPDATE delivery SET state = 'done', finished_at = $4, last_error = NULL,
                    attempts = attempts + $3
WHERE target = 'arc' AND event_id = $1 AND receiver = $2 AND state = 'pending';

-- name: dead
UPDATE delivery SET state = 'dead', finished_at = now(), last_error = $2
WHERE id = $1 AND state = 'pending';

-- name: add_attempt
-- A request sent at $6 ($8: the alarm's commit was confirmed by then) and its answer (or its
-- absence) at $7.
INSERT INTO arc_attempt (event_id, receiver, arc, outcome, snu, sent_at, at, after_commit)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: add_incident
INSERT INTO incident (event_id, device_id, reason, created_at) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING;
