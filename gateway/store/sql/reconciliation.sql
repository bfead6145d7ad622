-- What became of given devices' readings, for a reconciliation against what they sent
-- (simulator/reconcile.py; `make faults`). Scans: a check, not a hot path.

-- name: events_of
SELECT event_id, device_id, kind, measured_at FROM event WHERE device_id = ANY($1::text[]);

-- name: deliveries_of
SELECT d.event_id, d.target, d.state FROM delivery d
JOIN event e USING (event_id, measured_at)
WHERE e.device_id = ANY($1::text[]);
