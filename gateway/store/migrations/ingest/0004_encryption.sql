-- Ownership and encryption (ARCHITECTURE.md, Encryption): what ingest stores about a reading
-- from now on is only what routing and operations need in clear; the reading itself is stored
-- once per owning huvudman, sealed to that huvudman's public key.

-- Public keys of the huvudmän. The private keys never come near this database.
CREATE TABLE huvudman_key (
    key_id      bytea PRIMARY KEY CHECK (length(key_id) = 16),
    huvudman    text NOT NULL REFERENCES huvudman (code),
    suite       text NOT NULL,
    public_pem  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE UNIQUE INDEX huvudman_key_active ON huvudman_key (huvudman) WHERE retired_at IS NULL;

-- AES-256-GCM data keys, one per (huvudman, subject, epoch) and ingest process, stored only
-- wrapped (HPKE) to the huvudman's public key. Deleting a subject's rows here makes everything
-- sealed under them unreadable everywhere (crypto-shredding). `huvudman` is not a foreign key:
-- HMC's own quarantine key wraps data keys too.
CREATE TABLE data_key (
    key_id             bytea PRIMARY KEY CHECK (length(key_id) = 16),
    huvudman           text NOT NULL,
    subject_pseudonym  bytea NOT NULL,
    epoch              integer NOT NULL,
    recipient_key_id   bytea NOT NULL,
    suite              text NOT NULL,
    wrapped            bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_key_subject ON data_key (huvudman, subject_pseudonym);
CREATE INDEX data_key_epoch ON data_key (huvudman, epoch);

-- The clear body written by 0002 goes: nothing readable stays behind.
ALTER TABLE event DROP COLUMN body;
ALTER TABLE event ADD COLUMN routed_at timestamptz;
ALTER TABLE event ADD COLUMN quarantined boolean NOT NULL DEFAULT false;

-- One sealed copy of an event per owning huvudman (or, for quarantine and unclaimed alarms,
-- for HMC's quarantine key: huvudman is then NULL).
CREATE TABLE event_copy (
    event_id     uuid NOT NULL,
    measured_at  timestamptz NOT NULL,
    recipient    text NOT NULL,  -- a huvudman code, or 'quarantine'
    key_id       bytea NOT NULL,
    envelope     bytea NOT NULL,
    expires_at   timestamptz,    -- set for quarantine: deleted after it
    PRIMARY KEY (event_id, measured_at, recipient)
) PARTITION BY RANGE (measured_at);
CREATE TABLE event_copy_default PARTITION OF event_copy DEFAULT;
-- No index on key_id: crypto-shredding deletes data_key rows and leaves the copies unreadable
-- where they are; nothing needs to find copies by key. Every index here costs ingest throughput.
CREATE INDEX event_copy_expiry ON event_copy (expires_at) WHERE expires_at IS NOT NULL;

-- Alarms that reached only the fallback receiver, for someone to act on. Ids only.
CREATE TABLE incident (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid NOT NULL,
    device_id    text NOT NULL,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    UNIQUE (event_id, reason)
);

-- Delivery rows now name where the event goes: a huvudman, or the fallback alarm receiver.
-- The unique (event, huvudman) key goes: write_batch queues deliveries only for events it has
-- just inserted, so a resend cannot queue twice, and the index cost ingest throughput.
ALTER TABLE delivery ALTER COLUMN huvudman DROP NOT NULL;
ALTER TABLE delivery ADD COLUMN receiver text;
ALTER TABLE delivery DROP CONSTRAINT delivery_event_id_huvudman_key;
-- Ingest needs no lookup by device; fault-finding by device can scan a month's partition.
DROP INDEX event_device_time;

CREATE TRIGGER huvudman_key_changed AFTER INSERT OR UPDATE OR DELETE ON huvudman_key
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();

-- Monthly partitions for every time-partitioned table, moving rows out of the default.
CREATE OR REPLACE FUNCTION ensure_event_partitions(months_back int, months_ahead int)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    lo date;
    lo_ts timestamptz;
    hi_ts timestamptz;
    parent text;
    part text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['event', 'event_copy'] LOOP
        FOR i IN -months_back .. months_ahead LOOP
            lo := (first_month + make_interval(months => i))::date;
            -- Month boundaries in UTC whatever the session's TimeZone is.
            lo_ts := lo::timestamp AT TIME ZONE 'UTC';
            hi_ts := (lo + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            part := format('%s_%s', parent, to_char(lo, 'YYYY_MM'));
            CONTINUE WHEN to_regclass(part) IS NOT NULL;
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           part, parent);
            EXECUTE format(
                'WITH moved AS (DELETE FROM %I WHERE measured_at >= %L AND measured_at < %L '
                'RETURNING *) INSERT INTO %I SELECT * FROM moved',
                parent || '_default', lo_ts, hi_ts, part);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           parent, part, lo_ts, hi_ts);
            RETURN NEXT part;
        END LOOP;
    END LOOP;
END $$;

SELECT ensure_event_partitions(2, 3);
