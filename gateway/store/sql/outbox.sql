-- The outbox (gateway/delivery/, docs/delivery.md): claim, settle, and operators' commands.

-- name: claim
-- Claims up to $2 due deliveries of lane $1 and leases them for $3 (next_attempt_at moves
-- forward, so a crashed dispatcher's claims come back by themselves); SKIP LOCKED lets several
-- dispatchers claim side by side. Joined with what the sink sends: the event's kind and type,
-- the owner's sealed copy (HMC's quarantine copy for a fallback alarm) and its wrapped data key.
-- A copy or key that is gone (erased) comes back as NULL. Only destinations this dispatcher has
-- a sink for ($4 huvudmän, $5 fallback receivers) are claimed: the rest wait untouched.
WITH due AS (
    SELECT id FROM delivery
    WHERE state = 'pending' AND lane = $1 AND next_attempt_at <= now() AND target = 'owner'
      AND (huvudman = ANY($4::text[]) OR (huvudman IS NULL AND receiver = ANY($5::text[])))
    ORDER BY next_attempt_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE delivery d SET next_attempt_at = now() + $3::interval, attempts = attempts + 1
    FROM due WHERE d.id = due.id
    RETURNING d.*
)
SELECT c.id, c.event_id, c.measured_at, c.huvudman, c.receiver, c.lane, c.attempts,
       c.assignment_id, c.more_assignment_ids,
       e.kind, e.event_type, e.stored_at, cp.envelope, k.key_id, k.huvudman AS key_owner,
       k.subject_pseudonym, k.epoch, k.recipient_key_id, k.suite, k.wrapped
FROM claimed c
LEFT JOIN event e ON e.event_id = c.event_id AND e.measured_at = c.measured_at
LEFT JOIN event_copy cp ON cp.event_id = c.event_id AND cp.measured_at = c.measured_at
                       AND cp.recipient = coalesce(c.huvudman, 'hmc-quarantine')
LEFT JOIN data_key k ON k.key_id = cp.key_id;

-- name: subjects
-- Sealed subject references to send with a batch (gateway/delivery/subjects.py): once per
-- assignment and sink, not in every copy. An erased one (NULL) is left out.
SELECT id, huvudman, subject_sealed FROM assignment
WHERE id = ANY($1::uuid[]) AND subject_sealed IS NOT NULL;

-- name: settle
-- What the sinks answered, for a whole claimed batch in one statement. $2 per id: done; retry
-- (after $3 seconds, dead once attempts reach $5); dead (rejected); defer (after $3 seconds, the
-- attempt not counted: no sink configured, or its circuit breaker is open).
UPDATE delivery d SET
    state = CASE WHEN t.outcome = 'done' THEN 'done'
                 WHEN t.outcome = 'dead' OR (t.outcome = 'retry' AND d.attempts >= $5) THEN 'dead'
                 ELSE 'pending' END,
    attempts = CASE WHEN t.outcome = 'defer' THEN greatest(d.attempts - 1, 0)
                    ELSE d.attempts END,
    next_attempt_at = CASE WHEN t.outcome IN ('retry', 'defer')
                           THEN now() + make_interval(secs => t.delay)
                           ELSE d.next_attempt_at END,
    last_error = CASE WHEN t.outcome = 'done' THEN NULL ELSE coalesce(t.reason, d.last_error) END,
    finished_at = CASE WHEN t.outcome IN ('done', 'dead')
                            OR (t.outcome = 'retry' AND d.attempts >= $5) THEN now() END
FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::text[]) AS t(id, outcome, delay, reason)
WHERE d.id = t.id AND d.state = 'pending'
RETURNING d.id, d.state;

-- name: pending_by_lane
SELECT lane, count(*) FROM delivery WHERE state = 'pending' GROUP BY lane ORDER BY lane;

-- name: listing
-- Metadata only, never envelopes. $1 state (NULL: pending and dead), $2 huvudman or NULL.
SELECT id, event_id, measured_at, huvudman, assignment_id, receiver, lane, state, attempts,
       last_error, next_attempt_at, created_at, finished_at
FROM delivery
WHERE state = coalesce($1::text, state) AND ($1::text IS NOT NULL OR state <> 'done')
  AND ($2::text IS NULL OR huvudman = $2)
ORDER BY created_at, id LIMIT $3;

-- name: inspect
SELECT id, event_id, measured_at, huvudman, assignment_id, receiver, lane, state, attempts,
       last_error, next_attempt_at, created_at, finished_at
FROM delivery WHERE id = $1;

-- name: replay
-- Dead letters back to pending, attempts reset: one ($1) or all dead ($1 NULL) of $2 or all.
UPDATE delivery SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
                    finished_at = NULL
WHERE state = 'dead' AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR huvudman = $2)
RETURNING id;

-- name: purge_candidates
-- Dead letters that ended at least $3 days ago: one ($1) or all ($1 NULL), of $2 or all.
SELECT id FROM delivery
WHERE state = 'dead' AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR huvudman = $2)
  AND coalesce(finished_at, created_at) <= now() - make_interval(days => $3)
ORDER BY id;

-- name: purge
DELETE FROM delivery WHERE state = 'dead' AND id = ANY($1::bigint[]) RETURNING id;
