-- A hub (a Continua/PHD gateway, a phone app, a base station) uploads for the devices paired
-- with it: its credential may speak for them. Standards-based uploads name the measuring device
-- (EUI-64), not the uploader, so ingest checks each reading's device against this.
ALTER TABLE device ADD COLUMN hub_id text REFERENCES device (id);
CREATE INDEX device_hub ON device (hub_id) WHERE hub_id IS NOT NULL;
