-- What ingest holds in memory (gateway/ownership/registry.py): read whole on every change.

-- name: devices
SELECT id, device_type, credential_sha256, state, heartbeat_interval, hub_id, sip_ha1_md5,
       sip_ha1_sha256
FROM device;

-- name: assignments
SELECT id, device_id, huvudman, subject_key, subject_sealed, legal_basis, kinds, valid_from,
       valid_to, alarm_route, position_consent, dose_alarm
FROM assignment;

-- name: public_keys
SELECT huvudman, public_pem FROM huvudman_key WHERE retired_at IS NULL;
