-- Forwarding to the huvudman's own FHIR server (gateway/node/fhir_forward.py). The state lives
-- on the copy itself: one row per reading, whatever happens to the FHIR server or the node.
-- fhir_state: NULL for what is never sent (alarms, positions, status, device events), else
-- 'pending' (waiting or to be retried at fhir_next_at), 'done' (the server holds it) or
-- 'dead' (the server refused it, or it makes no Observation; fhir_reason says why, letters only).
ALTER TABLE huvudman_node.copy
    ADD COLUMN fhir_state    text CHECK (fhir_state IN ('pending', 'done', 'dead')),
    ADD COLUMN fhir_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN fhir_next_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN fhir_status   integer,          -- the last HTTP status for this reading
    ADD COLUMN fhir_reason   text,             -- fixed phrases and FHIR issue codes only
    ADD COLUMN fhir_done_at  timestamptz;      -- when it became done or dead

-- Readings stored before this migration are forwarded too (oldest first), once a FHIR server
-- is configured: the EHR gets the huvudman's whole record, not only what came after.
UPDATE huvudman_node.copy SET fhir_state = 'pending' WHERE event_type = 'reading';

CREATE INDEX copy_fhir_due ON huvudman_node.copy (fhir_next_at) WHERE fhir_state = 'pending';
CREATE INDEX copy_fhir_dead ON huvudman_node.copy (fhir_done_at) WHERE fhir_state = 'dead';
