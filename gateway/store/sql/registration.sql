-- Huvudmän, devices and assignments from config files and the CLI (gateway/ownership/registration.py).

-- name: upsert_huvudman
INSERT INTO huvudman (code, name, kind) VALUES ($1, $2, $3)
ON CONFLICT (code) DO UPDATE SET name = excluded.name, kind = excluded.kind
WHERE (huvudman.name, huvudman.kind) IS DISTINCT FROM (excluded.name, excluded.kind);

-- name: huvudman_listing
SELECT code, name, kind FROM huvudman ORDER BY code;

-- name: huvudman_exists
SELECT EXISTS (SELECT 1 FROM huvudman WHERE code = $1);

-- name: upsert_device
-- A credential given ($4, with its SIP Digest H(A1)s $7, $8, which may be NULL) replaces the
-- stored one whole; none given keeps it.
INSERT INTO device (id, device_type, model, credential_sha256, heartbeat_interval, hub_id,
                    sip_ha1_md5, sip_ha1_sha256)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE
SET device_type = excluded.device_type, model = excluded.model,
    credential_sha256 = coalesce(excluded.credential_sha256, device.credential_sha256),
    sip_ha1_md5 = CASE WHEN excluded.credential_sha256 IS NULL THEN device.sip_ha1_md5
                       ELSE excluded.sip_ha1_md5 END,
    sip_ha1_sha256 = CASE WHEN excluded.credential_sha256 IS NULL THEN device.sip_ha1_sha256
                          ELSE excluded.sip_ha1_sha256 END,
    heartbeat_interval = excluded.heartbeat_interval, hub_id = excluded.hub_id,
    updated_at = now()
WHERE (device.device_type, device.model, device.credential_sha256, device.heartbeat_interval,
       device.hub_id)
      IS DISTINCT FROM (excluded.device_type, excluded.model,
                        coalesce(excluded.credential_sha256, device.credential_sha256),
                        excluded.heartbeat_interval, excluded.hub_id);

-- name: devices
SELECT d.id, d.device_type, d.model, d.state, d.credential_sha256 IS NOT NULL AS has_credential,
       (SELECT count(*) FROM assignment a
         WHERE a.device_id = d.id AND a.valid_from <= now()
           AND (a.valid_to IS NULL OR a.valid_to > now())) AS active_assignments
FROM device d ORDER BY d.id;

-- name: assignment_exists
SELECT EXISTS (SELECT 1 FROM assignment WHERE id = $1);

-- name: insert_assignment
-- $4 is the subject's keyed pseudonym and $11 the reference sealed to the huvudman; the
-- reference itself is never stored (gateway/ownership/subjects.py). $12: a missed dose is an alarm.
INSERT INTO assignment (id, device_id, huvudman, subject_key, legal_basis, kinds, valid_from,
                        valid_to, alarm_route, position_consent, subject_sealed, dose_alarm)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: end_assignment
UPDATE assignment SET valid_to = $2
WHERE id = $1 AND (valid_to IS NULL OR valid_to > $2) AND valid_from < $2
RETURNING id;

-- name: assignments
-- Every assignment, or one device's ($1): ids, huvudman, basis, kinds, times. No subject
-- reference.
SELECT id, device_id, huvudman, legal_basis, kinds, valid_from, valid_to, alarm_route,
       position_consent, dose_alarm
FROM assignment
WHERE ($1::text IS NULL OR device_id = $1)
ORDER BY device_id, valid_from, id;
