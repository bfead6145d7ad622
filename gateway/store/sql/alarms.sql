-- An alarm's history (gateway/delivery/alarm_history.py): ids and times, never content.

-- name: event
-- An alarm's own facts (no content: that is sealed): when it was measured, received, committed.
SELECT event_id, device_id, measured_at, received_at, stored_at, source
FROM event WHERE event_id = $1 AND event_type = 'alarm';

-- name: deliveries
SELECT id, huvudman, receiver, lane, target, state, attempts, created_at, finished_at,
       next_attempt_at, last_error
FROM delivery WHERE event_id = $1 ORDER BY id;

-- name: arc_attempts
SELECT receiver, arc, outcome, snu, at, sent_at, after_commit FROM arc_attempt WHERE event_id = $1 ORDER BY id;

-- name: incidents
SELECT reason, created_at, resolved_at FROM incident WHERE event_id = $1 ORDER BY id;

-- name: recent
SELECT e.event_id, e.device_id, e.received_at, e.stored_at,
       count(d.id) AS deliveries,
       count(d.id) FILTER (WHERE d.state = 'done') AS delivered,
       bool_or(i.event_id IS NOT NULL) AS incident
FROM event e
LEFT JOIN delivery d ON d.event_id = e.event_id
LEFT JOIN incident i ON i.event_id = e.event_id
WHERE e.event_type = 'alarm' AND e.received_at >= $1
GROUP BY e.event_id, e.device_id, e.received_at, e.stored_at
ORDER BY e.received_at DESC
LIMIT $2;
