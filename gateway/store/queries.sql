-- Every statement the gateway runs, by name. connector.py loads this file; no SQL lives in
-- Python code. Sections start with `-- name: <query_name>`.

-- name: write_batch
-- One round trip per batch: insert the new events (skipping resends already stored), and only
-- for those that were new, their sealed copies, deliveries and incidents; store any new
-- wrapped data keys. Returns the ids that were new.
WITH inserted AS (
    INSERT INTO event (event_id, measured_at, received_at, device_id, event_type, kind, code,
                       source, flags, routed_at, quarantined)
    SELECT event_id, measured_at, received_at, device_id, event_type, kind, code, source,
           string_to_array(flags, ','), routed_at, quarantined
    FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[],
                $6::text[], $7::int[], $8::text[], $9::text[], $10::timestamptz[],
                $11::bool[])
        AS t(event_id, measured_at, received_at, device_id, event_type, kind, code, source,
             flags, routed_at, quarantined)
    ON CONFLICT DO NOTHING
    RETURNING event_id, measured_at
), copies AS (
    INSERT INTO event_copy (event_id, measured_at, recipient, key_id, envelope, expires_at)
    SELECT c.event_id, c.measured_at, c.recipient, c.key_id, c.envelope, c.expires_at
    FROM unnest($12::uuid[], $13::timestamptz[], $14::text[], $15::bytea[], $16::bytea[],
                $17::timestamptz[])
        AS c(event_id, measured_at, recipient, key_id, envelope, expires_at)
    JOIN inserted i USING (event_id, measured_at)
    ON CONFLICT DO NOTHING
    RETURNING 1
), queued AS (
    INSERT INTO delivery (event_id, measured_at, huvudman, assignment_id, lane, receiver,
                          target, next_attempt_at)
    SELECT d.event_id, i.measured_at, d.huvudman, d.assignment_id, d.lane, d.receiver,
           d.target, now() + make_interval(secs => d.delay)
    FROM unnest($18::uuid[], $19::text[], $20::uuid[], $21::text[], $22::text[], $33::text[],
                $34::float8[])
        AS d(event_id, huvudman, assignment_id, lane, receiver, target, delay)
    JOIN inserted i USING (event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
), keys AS (
    INSERT INTO data_key (key_id, huvudman, subject_pseudonym, epoch, recipient_key_id, suite,
                          wrapped)
    SELECT * FROM unnest($23::bytea[], $24::text[], $25::bytea[], $26::int[], $27::bytea[],
                         $28::text[], $29::bytea[])
    ON CONFLICT DO NOTHING
    RETURNING 1
), incidents AS (
    INSERT INTO incident (event_id, device_id, reason)
    SELECT n.event_id, n.device_id, n.reason
    FROM unnest($30::uuid[], $31::text[], $32::text[]) AS n(event_id, device_id, reason)
    JOIN inserted i USING (event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT array_agg(event_id) FROM inserted) AS new_ids,
       (SELECT count(*) FROM queued) AS queued,
       (SELECT count(*) FROM copies) AS copies,
       (SELECT count(*) FROM keys) AS keys,
       (SELECT count(*) FROM incidents) AS incidents;

-- name: ensure_partitions
SELECT ensure_event_partitions($1, $2);

-- name: load_public_keys
SELECT huvudman, public_pem FROM huvudman_key WHERE retired_at IS NULL;

-- name: load_devices
SELECT id, device_type, credential_sha256, state, heartbeat_interval, hub_id FROM device;

-- name: load_assignments
SELECT id, device_id, huvudman, subject_key, subject_sealed, legal_basis, kinds, valid_from,
       valid_to, alarm_route, position_consent, dose_alarm
FROM assignment;

-- name: upsert_huvudman
INSERT INTO huvudman (code, name, kind) VALUES ($1, $2, $3)
ON CONFLICT (code) DO UPDATE SET name = excluded.name, kind = excluded.kind
WHERE (huvudman.name, huvudman.kind) IS DISTINCT FROM (excluded.name, excluded.kind);

-- name: list_huvudman
SELECT code, name, kind FROM huvudman ORDER BY code;

-- name: upsert_device
INSERT INTO device (id, device_type, model, credential_sha256, heartbeat_interval, hub_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE
SET device_type = excluded.device_type, model = excluded.model,
    credential_sha256 = coalesce(excluded.credential_sha256, device.credential_sha256),
    heartbeat_interval = excluded.heartbeat_interval, hub_id = excluded.hub_id,
    updated_at = now()
WHERE (device.device_type, device.model, device.credential_sha256, device.heartbeat_interval,
       device.hub_id)
      IS DISTINCT FROM (excluded.device_type, excluded.model,
                        coalesce(excluded.credential_sha256, device.credential_sha256),
                        excluded.heartbeat_interval, excluded.hub_id);

-- name: set_device_credential
UPDATE device SET credential_sha256 = $2, updated_at = now() WHERE id = $1 RETURNING id;

-- name: set_device_state
UPDATE device SET state = $2, updated_at = now() WHERE id = $1 RETURNING id;

-- name: list_devices
SELECT d.id, d.device_type, d.model, d.state, d.credential_sha256 IS NOT NULL AS has_credential,
       (SELECT count(*) FROM assignment a
         WHERE a.device_id = d.id AND a.valid_from <= now()
           AND (a.valid_to IS NULL OR a.valid_to > now())) AS active_assignments
FROM device d ORDER BY d.id;

-- name: insert_assignment
-- $4 is the subject's keyed pseudonym and $11 the reference sealed to the huvudman; the
-- reference itself is never stored (gateway/subjects.py). $12: a missed dose is an alarm.
INSERT INTO assignment (id, device_id, huvudman, subject_key, legal_basis, kinds, valid_from,
                        valid_to, alarm_route, position_consent, subject_sealed, dose_alarm)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: active_public_pem
SELECT public_pem FROM huvudman_key WHERE huvudman = $1 AND retired_at IS NULL;

-- name: end_assignment
UPDATE assignment SET valid_to = $2
WHERE id = $1 AND (valid_to IS NULL OR valid_to > $2) AND valid_from < $2
RETURNING id;

-- name: list_assignments
SELECT id, device_id, huvudman, legal_basis, kinds, valid_from, valid_to, alarm_route,
       position_consent, dose_alarm
FROM assignment
WHERE ($1::text IS NULL OR device_id = $1)
ORDER BY device_id, valid_from;

-- name: count_events
SELECT count(*) FROM event;

-- name: event_counts_by_type
SELECT event_type, count(*) FROM event GROUP BY event_type ORDER BY event_type;

-- name: pending_deliveries
SELECT lane, count(*) FROM delivery WHERE state = 'pending' GROUP BY lane ORDER BY lane;

-- name: insert_public_key
INSERT INTO huvudman_key (key_id, huvudman, suite, public_pem) VALUES ($1, $2, $3, $4)
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id;

-- name: retire_public_keys
UPDATE huvudman_key SET retired_at = now()
WHERE huvudman = $1 AND retired_at IS NULL
RETURNING key_id;

-- name: active_public_key
SELECT key_id FROM huvudman_key WHERE huvudman = $1 AND retired_at IS NULL;

-- name: list_public_keys
SELECT h.code, h.name, k.key_id, k.suite, k.created_at, k.retired_at
FROM huvudman h LEFT JOIN huvudman_key k ON k.huvudman = h.code
ORDER BY h.code, k.created_at;

-- name: audit_append
SELECT audit_append($1, $2, $3, $4::jsonb);

-- name: audit_verify
-- The first entry whose stored prev_hash or hash does not match a recomputation, or nothing.
WITH chain AS (
    SELECT seq, prev_hash, hash,
           lag(hash, 1, '\x'::bytea) OVER (ORDER BY seq) AS expected_prev,
           lag(seq, 1, 0::bigint) OVER (ORDER BY seq) AS previous_seq,
           sha256(audit_entry_bytes(seq, at, actor, action, target, details, prev_hash))
               AS recomputed
    FROM audit_log
)
SELECT seq,
       CASE WHEN seq <> previous_seq + 1 THEN 'an entry before it is missing'
            WHEN prev_hash <> expected_prev THEN 'its link to the previous entry is broken'
            ELSE 'its content was changed' END AS problem
FROM chain
WHERE seq <> previous_seq + 1 OR prev_hash <> expected_prev OR hash <> recomputed
ORDER BY seq LIMIT 1;

-- name: audit_head
SELECT count(*) AS entries, max(seq) AS last_seq,
       (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS head
FROM audit_log;

-- name: audit_list
SELECT seq, at, actor, action, target, details FROM audit_log
ORDER BY seq DESC LIMIT $1;

-- name: subject_keys
SELECT key_id FROM data_key WHERE huvudman = $1 AND subject_pseudonym = $2;

-- name: huvudman_keys
SELECT key_id FROM data_key WHERE huvudman = $1;

-- name: epoch_keys
SELECT key_id FROM data_key WHERE epoch < $1 AND ($2::text IS NULL OR huvudman = $2);

-- name: copies_under_keys
-- How many sealed copies the given data keys open (a scan: erasure is rare and deliberate).
SELECT count(*) FROM event_copy WHERE key_id = ANY($1::bytea[]);

-- name: delete_keys
DELETE FROM data_key WHERE key_id = ANY($1::bytea[]);

-- name: forget_subject_refs
-- The sealed reference goes; the pseudonym stays so the assignment's history still holds.
UPDATE assignment SET subject_sealed = NULL
WHERE huvudman = $1 AND subject_key = $2 AND subject_sealed IS NOT NULL
RETURNING id;

-- name: old_partitions
SELECT c.relname AS partition
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname IN ('event', 'event_copy') AND c.relname ~ '_[0-9]{4}_[0-9]{2}$'
  AND to_date(right(c.relname, 7), 'YYYY_MM') < $1::date
ORDER BY c.relname;

-- name: expired_quarantine
SELECT count(*) FROM event_copy WHERE expires_at < $1;

-- name: purge_quarantine
DELETE FROM event_copy WHERE expires_at < $1;

-- Device lifecycle (gateway/lifecycle.py) and admin API operators (gateway/operators.py).

-- name: lifecycle_lock_device
-- The device row, locked until the transaction ends: two operators cannot race a transition.
SELECT id, device_type, state, state_since, credential_sha256 IS NOT NULL AS has_credential,
       hub_id
FROM device WHERE id = $1 FOR UPDATE;

-- name: lifecycle_insert_device
INSERT INTO device (id, device_type, model, credential_sha256, heartbeat_interval, hub_id,
                    state, state_since)
VALUES ($1, $2, $3, $4, $5, $6, 'in_stock', now())
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: lifecycle_set_state
UPDATE device SET state = $2, state_since = now(), updated_at = now() WHERE id = $1
RETURNING state_since;

-- name: lifecycle_set_credential
-- A new credential hash, or NULL to remove it (retire).
UPDATE device SET credential_sha256 = $2, updated_at = now() WHERE id = $1 RETURNING id;

-- name: lifecycle_open_assignments
-- Assignments of a device that still cover some time from $2 on, oldest first.
SELECT id, huvudman, valid_from, valid_to FROM assignment
WHERE device_id = $1 AND (valid_to IS NULL OR valid_to > $2)
ORDER BY valid_from, id;

-- name: lifecycle_end_assignment
-- Ends an assignment at $2, or at its own start if it had not begun (it then covers nothing).
UPDATE assignment SET valid_to = greatest($2::timestamptz, valid_from)
WHERE id = $1 AND (valid_to IS NULL OR valid_to > $2)
RETURNING valid_to;

-- name: lifecycle_last_assignment_end
-- Where the device's history ends: no new assignment may start before it.
SELECT max(coalesce(valid_to, 'infinity'::timestamptz)) FROM assignment WHERE device_id = $1;

-- name: lifecycle_unpair
-- Devices paired to $1 as their hub lose the pairing, and $1 leaves its own hub.
UPDATE device SET hub_id = NULL, updated_at = now()
WHERE hub_id = $1 OR (id = $1 AND hub_id IS NOT NULL)
RETURNING id;

-- name: lifecycle_device
SELECT id, device_type, model, state, state_since, credential_sha256 IS NOT NULL AS has_credential,
       hub_id, heartbeat_interval, created_at,
       ARRAY(SELECT p.id FROM device p WHERE p.hub_id = device.id ORDER BY p.id) AS paired
FROM device WHERE id = $1;

-- name: lifecycle_assignments
-- A device's assignments for display: ids, huvudman, basis, kinds, times. No subject reference.
SELECT id, huvudman, legal_basis, kinds, valid_from, valid_to, alarm_route, position_consent,
       dose_alarm
FROM assignment WHERE device_id = $1 ORDER BY valid_from, id;

-- name: huvudman_exists
SELECT EXISTS (SELECT 1 FROM huvudman WHERE code = $1);

-- name: operator_insert
INSERT INTO operator (name, token_sha256) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: operator_by_token
SELECT name FROM operator WHERE token_sha256 = $1 AND enabled;

-- name: operator_disable
UPDATE operator SET enabled = false, disabled_at = now() WHERE name = $1 AND enabled
RETURNING name;

-- name: operator_list
SELECT name, enabled, created_at, disabled_at FROM operator ORDER BY name;

-- name: lifecycle_lock_device_state
SELECT state FROM device WHERE id = $1 FOR UPDATE;

-- Delivery (gateway/delivery/, docs/delivery.md).

-- name: delivery_claim
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
       e.kind, e.event_type, e.stored_at, cp.envelope, k.key_id, k.huvudman AS key_owner,
       k.subject_pseudonym, k.epoch, k.recipient_key_id, k.suite, k.wrapped
FROM claimed c
LEFT JOIN event e ON e.event_id = c.event_id AND e.measured_at = c.measured_at
LEFT JOIN event_copy cp ON cp.event_id = c.event_id AND cp.measured_at = c.measured_at
                       AND cp.recipient = coalesce(c.huvudman, 'hmc-quarantine')
LEFT JOIN data_key k ON k.key_id = cp.key_id;

-- name: delivery_settle
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

-- name: delivery_list
-- Metadata only, never envelopes. $1 state (NULL: pending and dead), $2 huvudman or NULL.
SELECT id, event_id, huvudman, receiver, lane, state, attempts, last_error, next_attempt_at,
       created_at, finished_at
FROM delivery
WHERE state = coalesce($1::text, state) AND ($1::text IS NOT NULL OR state <> 'done')
  AND ($2::text IS NULL OR huvudman = $2)
ORDER BY created_at, id LIMIT $3;

-- name: delivery_inspect
SELECT id, event_id, measured_at, huvudman, assignment_id, receiver, lane, state, attempts,
       last_error, next_attempt_at, created_at, finished_at
FROM delivery WHERE id = $1;

-- name: delivery_replay
-- Dead letters back to pending, attempts reset: one ($1) or all dead ($1 NULL) of $2 or all.
UPDATE delivery SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
                    finished_at = NULL
WHERE state = 'dead' AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR huvudman = $2)
RETURNING id;

-- name: delivery_purge_candidates
-- Dead letters that ended at least $3 days ago: one ($1) or all ($1 NULL), of $2 or all.
SELECT id FROM delivery
WHERE state = 'dead' AND ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR huvudman = $2)
  AND coalesce(finished_at, created_at) <= now() - make_interval(days => $3)
ORDER BY id;

-- name: delivery_purge
DELETE FROM delivery WHERE state = 'dead' AND id = ANY($1::bigint[]) RETURNING id;

-- name: supervision_load
-- Device supervision (gateway/supervision.py): what a starting ingest knows of every device.
SELECT device_id, last_seen_at, battery_low_since FROM device_seen;

-- name: supervision_last_seen
SELECT device_id, last_seen_at FROM device_seen WHERE device_id = ANY($1::text[]);

-- name: supervision_flush
-- One statement per flush: last-seen only moves forward (several instances write it); the
-- battery state is written only where this instance learned something ($4).
WITH t AS (
    SELECT t.device_id, t.last_seen_at, t.battery_low_since, t.battery_known
    FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bool[])
        AS t(device_id, last_seen_at, battery_low_since, battery_known)
    JOIN device d ON d.id = t.device_id
), updated AS (
    UPDATE device_seen s
    SET last_seen_at = GREATEST(s.last_seen_at, t.last_seen_at),
        battery_low_since = CASE WHEN t.battery_known THEN t.battery_low_since
                                 ELSE s.battery_low_since END
    FROM t WHERE s.device_id = t.device_id
    RETURNING s.device_id
)
INSERT INTO device_seen (device_id, last_seen_at, battery_low_since)
SELECT t.device_id, t.last_seen_at, t.battery_low_since FROM t
WHERE t.device_id NOT IN (SELECT device_id FROM updated)
ON CONFLICT (device_id) DO UPDATE
SET last_seen_at = GREATEST(device_seen.last_seen_at, EXCLUDED.last_seen_at),
    battery_low_since = COALESCE(EXCLUDED.battery_low_since, device_seen.battery_low_since);

-- name: alarm_event
-- An alarm's own facts (no content: that is sealed): when it was measured, received, committed.
SELECT event_id, device_id, measured_at, received_at, stored_at, routed_at, flags, source
FROM event WHERE event_id = $1 AND event_type = 'alarm';

-- name: alarm_deliveries
SELECT id, huvudman, receiver, lane, target, state, attempts, created_at, finished_at,
       next_attempt_at, last_error
FROM delivery WHERE event_id = $1 ORDER BY id;

-- name: alarm_incidents
SELECT reason, created_at, resolved_at FROM incident WHERE event_id = $1 ORDER BY id;

-- name: recent_alarms
SELECT e.event_id, e.device_id, e.received_at, e.stored_at,
       count(d.id) AS deliveries,
       count(d.id) FILTER (WHERE d.state = 'done') AS delivered,
       max(d.finished_at) AS last_delivered_at,
       bool_or(i.event_id IS NOT NULL) AS incident
FROM event e
LEFT JOIN delivery d ON d.event_id = e.event_id
LEFT JOIN incident i ON i.event_id = e.event_id
WHERE e.event_type = 'alarm' AND e.received_at >= $1
GROUP BY e.event_id, e.device_id, e.received_at, e.stored_at
ORDER BY e.received_at DESC
LIMIT $2;

-- name: arc_claim
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

-- name: arc_extend_lease
-- The alarms this instance is still handling ($1 event ids, $2 receivers, pairwise) stay its own.
UPDATE delivery d SET next_attempt_at = now() + $3::interval
FROM unnest($1::uuid[], $2::text[]) AS t(event_id, receiver)
WHERE d.target = 'arc' AND d.state = 'pending' AND d.event_id = t.event_id
  AND d.receiver = t.receiver;

-- name: arc_done
-- An alarm centre accepted the alarm ($3 requests were sent on the way).
UPDATE delivery SET state = 'done', finished_at = now(), last_error = NULL,
                    attempts = attempts + $3
WHERE target = 'arc' AND event_id = $1 AND receiver = $2 AND state = 'pending';

-- name: arc_dead
UPDATE delivery SET state = 'dead', finished_at = now(), last_error = $2
WHERE id = $1 AND state = 'pending';

-- name: arc_attempt_add
INSERT INTO arc_attempt (event_id, receiver, arc, outcome, snu) VALUES ($1, $2, $3, $4, $5);

-- name: arc_incident
INSERT INTO incident (event_id, device_id, reason) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: alarm_arc_attempts
SELECT receiver, arc, outcome, snu, at FROM arc_attempt WHERE event_id = $1 ORDER BY id;
