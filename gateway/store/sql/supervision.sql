-- Device supervision (gateway/ingest/supervision.py): last seen and battery state.

-- name: load
-- What a starting ingest knows of every device.
SELECT device_id, last_seen_at, battery_low_since FROM device_seen;

-- name: last_seen
SELECT device_id, last_seen_at FROM device_seen WHERE device_id = ANY($1::text[]);

-- name: flush
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
