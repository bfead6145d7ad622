-- The device lifecycle (gateway/ownership/lifecycle.py).

-- name: lock_device
-- The device row, locked until the transaction ends: two operators cannot race a transition.
SELECT id, state, state_since FROM device WHERE id = $1 FOR UPDATE;

-- name: insert_device
INSERT INTO device (id, device_type, model, credential_sha256, heartbeat_interval, hub_id,
                    state, state_since, sip_ha1_md5, sip_ha1_sha256)
VALUES ($1, $2, $3, $4, $5, $6, 'in_stock', now(), $7, $8)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: set_state
UPDATE device SET state = $2, state_since = now(), updated_at = now() WHERE id = $1
RETURNING state_since;

-- name: set_credential
-- A new credential (its hash and SIP Digest H(A1)s), or NULLs to remove it (retire).
UPDATE device SET credential_sha256 = $2, sip_ha1_md5 = $3, sip_ha1_sha256 = $4,
                  updated_at = now()
WHERE id = $1 RETURNING id;

-- name: open_assignments
-- Assignments of a device that still cover some time from $2 on, oldest first.
SELECT id, huvudman FROM assignment
WHERE device_id = $1 AND (valid_to IS NULL OR valid_to > $2)
ORDER BY valid_from, id;

-- name: end_assignment
-- Ends an assignment at $2, or at its own start if it had not begun (it then covers nothing).
UPDATE assignment SET valid_to = greatest($2::timestamptz, valid_from)
WHERE id = $1 AND (valid_to IS NULL OR valid_to > $2)
RETURNING valid_to;

-- name: last_assignment_end
-- Where the device's history ends: no new assignment may start before it.
SELECT max(coalesce(valid_to, 'infinity'::timestamptz)) FROM assignment WHERE device_id = $1;

-- name: unpair
-- Devices paired to $1 as their hub lose the pairing, and $1 leaves its own hub.
UPDATE device SET hub_id = NULL, updated_at = now()
WHERE hub_id = $1 OR (id = $1 AND hub_id IS NOT NULL)
RETURNING id;

-- name: device
SELECT id, device_type, model, state, state_since, credential_sha256 IS NOT NULL AS has_credential,
       hub_id,
       ARRAY(SELECT p.id FROM device p WHERE p.hub_id = device.id ORDER BY p.id) AS paired
FROM device WHERE id = $1;
