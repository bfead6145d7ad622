-- Every statement the gateway runs, by name. connector.py loads this file; no SQL lives in
-- Python code. Sections start with `-- name: <query_name>`.

-- name: write_batch
-- One round trip per batch: insert the new events, skip the ones already stored (resends), and
-- queue deliveries only for events that were new. Returns the ids that were new.
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                         $5::text[], $6::text[], $7::int[], $8::text[], $9::text[], $10::bytea[])
        AS t(event_id, measured_at, received_at, device_id, event_type, kind, code, source,
             flags, body)
), inserted AS (
    INSERT INTO event (event_id, measured_at, received_at, device_id, event_type, kind, code,
                       source, flags, body)
    SELECT event_id, measured_at, received_at, device_id, event_type, kind, code, source,
           string_to_array(flags, ','), body
    FROM incoming
    ON CONFLICT DO NOTHING
    RETURNING event_id, measured_at
), queued AS (
    INSERT INTO delivery (event_id, measured_at, huvudman, assignment_id, lane)
    SELECT d.event_id, i.measured_at, d.huvudman, d.assignment_id, d.lane
    FROM unnest($11::uuid[], $12::text[], $13::uuid[], $14::text[])
        AS d(event_id, huvudman, assignment_id, lane)
    JOIN inserted i USING (event_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT array_agg(event_id) FROM inserted) AS new_ids,
       (SELECT count(*) FROM queued) AS queued;

-- name: ensure_partitions
SELECT ensure_event_partitions($1, $2);

-- name: load_devices
SELECT id, device_type, credential_sha256, state, heartbeat_interval, hub_id FROM device;

-- name: load_assignments
SELECT id, device_id, huvudman, subject_ref, legal_basis, kinds, valid_from, valid_to,
       alarm_route, position_consent
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
INSERT INTO assignment (id, device_id, huvudman, subject_ref, legal_basis, kinds, valid_from,
                        valid_to, alarm_route, position_consent)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: end_assignment
UPDATE assignment SET valid_to = $2
WHERE id = $1 AND (valid_to IS NULL OR valid_to > $2) AND valid_from < $2
RETURNING id;

-- name: list_assignments
SELECT id, device_id, huvudman, legal_basis, kinds, valid_from, valid_to, alarm_route,
       position_consent
FROM assignment
WHERE ($1::text IS NULL OR device_id = $1)
ORDER BY device_id, valid_from;

-- name: count_events
SELECT count(*) FROM event;

-- name: event_counts_by_type
SELECT event_type, count(*) FROM event GROUP BY event_type ORDER BY event_type;

-- name: pending_deliveries
SELECT lane, count(*) FROM delivery WHERE state = 'pending' GROUP BY lane ORDER BY lane;
