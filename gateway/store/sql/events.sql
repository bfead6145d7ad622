-- What ingest writes for each batch, the event partitions, and counts for the demo's status line.

-- name: write_batch
-- One round trip per batch: insert the new events (skipping resends already stored), and only
-- for those that were new, their sealed copies, deliveries and incidents; store any new
-- wrapped data keys. Returns the ids that were new. Arguments by name, one array per column
-- (gateway/store/events.py, `EventQueries.write_batch`).
-- A copy sealed under a data key that no longer exists (crypto-shredded while ingest held it
-- in cache) could never be opened: if any is, nothing is written and `missing_keys` says which,
-- so ingest seals again under fresh keys. Erasure locks data_key against this statement
-- (erasure.sql, lock_keys), so a key it destroys is either seen gone here or destroyed after.
WITH sealed_under AS (
    SELECT DISTINCT u.key_id FROM unnest(:copy_key_id::bytea[]) AS u(key_id)
    WHERE u.key_id <> ALL (:key_id::bytea[])
), missing AS (
    SELECT s.key_id FROM sealed_under s
    WHERE NOT EXISTS (SELECT 1 FROM data_key d WHERE d.key_id = s.key_id)
), inserted AS (
    INSERT INTO event (event_id, measured_at, received_at, device_id, event_type, kind, code,
                       source, flags, routed_at, quarantined)
    SELECT event_id, measured_at, received_at, device_id, event_type, kind, code, source,
           string_to_array(flags, ','), routed_at, quarantined
    FROM unnest(:event_id::uuid[], :measured_at::timestamptz[], :received_at::timestamptz[],
                :device_id::text[], :event_type::text[], :kind::text[], :code::int[],
                :source::text[], :flags::text[], :routed_at::timestamptz[],
                :quarantined::bool[])
        AS t(event_id, measured_at, received_at, device_id, event_type, kind, code, source,
             flags, routed_at, quarantined)
    WHERE NOT EXISTS (SELECT 1 FROM missing)
    ON CONFLICT DO NOTHING
    RETURNING event_id, measured_at
), copies AS (
    INSERT INTO event_copy (event_id, measured_at, recipient, key_id, envelope, expires_at)
    SELECT c.event_id, c.measured_at, c.recipient, c.key_id, c.envelope, c.expires_at
    FROM unnest(:copy_event_id::uuid[], :copy_measured_at::timestamptz[],
                :copy_recipient::text[], :copy_key_id::bytea[], :copy_envelope::bytea[],
                :copy_expires_at::timestamptz[])
        AS c(event_id, measured_at, recipient, key_id, envelope, expires_at)
    JOIN inserted i USING (event_id, measured_at)
    ON CONFLICT DO NOTHING
    RETURNING 1
), queued AS (
    INSERT INTO delivery (event_id, measured_at, huvudman, assignment_id, lane, receiver,
                          target, next_attempt_at, more_assignment_ids)
    SELECT d.event_id, i.measured_at, d.huvudman, d.assignment_id, d.lane, d.receiver,
           d.target, now() + make_interval(secs => d.delay),
           string_to_array(d.more, ',')::uuid[]
    FROM unnest(:delivery_event_id::uuid[], :delivery_huvudman::text[],
                :delivery_assignment_id::uuid[], :delivery_lane::text[],
                :delivery_receiver::text[], :delivery_target::text[],
                :delivery_delay_s::float8[], :delivery_more::text[])
        AS d(event_id, huvudman, assignment_id, lane, receiver, target, delay, more)
    JOIN inserted i USING (event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
), keys AS (
    INSERT INTO data_key (key_id, huvudman, subject_pseudonym, epoch, recipient_key_id, suite,
                          wrapped)
    SELECT * FROM unnest(:key_id::bytea[], :key_huvudman::text[],
                         :key_subject_pseudonym::bytea[], :key_epoch::int[],
                         :key_recipient_key_id::bytea[], :key_suite::text[],
                         :key_wrapped::bytea[])
    WHERE NOT EXISTS (SELECT 1 FROM missing)
    ON CONFLICT DO NOTHING
    RETURNING 1
), incidents AS (
    INSERT INTO incident (event_id, device_id, reason)
    SELECT n.event_id, n.device_id, n.reason
    FROM unnest(:incident_event_id::uuid[], :incident_device_id::text[],
                :incident_reason::text[]) AS n(event_id, device_id, reason)
    JOIN inserted i USING (event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT array_agg(event_id) FROM inserted) AS new_ids,
       (SELECT count(*) FROM queued) AS queued,
       (SELECT count(*) FROM copies) AS copies,
       (SELECT count(*) FROM keys) AS keys,
       (SELECT count(*) FROM incidents) AS incidents,
       (SELECT array_agg(key_id) FROM missing) AS missing_keys;

-- name: ensure_partitions
SELECT ensure_event_partitions($1, $2);

-- name: counts_by_type
SELECT event_type, count(*) FROM event GROUP BY event_type ORDER BY event_type;

-- name: ping
-- Readiness: the database answers.
SELECT 1;
