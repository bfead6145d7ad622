-- Events, partitioned by measurement month, and the outbox of deliveries.

-- The primary key includes measured_at because a partitioned table's unique keys must contain
-- the partition key. That costs nothing for deduplication: the event id is derived from the
-- measurement time, so a resend always carries the same pair.
CREATE TABLE event (
    event_id     uuid NOT NULL,
    measured_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    device_id    text NOT NULL,
    event_type   text NOT NULL CHECK (event_type IN ('reading', 'alarm', 'status', 'position',
                                                     'event')),
    kind         text NOT NULL,
    code         integer,
    source       text NOT NULL,
    flags        text[] NOT NULL DEFAULT '{}',
    body         bytea NOT NULL,
    PRIMARY KEY (event_id, measured_at)
) PARTITION BY RANGE (measured_at);

-- Catches what no monthly partition covers: late readings from long ago, and devices with
-- clocks in the far past or future. ensure_event_partitions() moves rows out of it when it
-- creates the partition they belong to.
CREATE TABLE event_default PARTITION OF event DEFAULT;
CREATE INDEX event_device_time ON event (device_id, measured_at);

CREATE FUNCTION ensure_event_partitions(months_back int, months_ahead int)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    lo date;
    hi date;
    lo_ts timestamptz;
    hi_ts timestamptz;
    part text;
BEGIN
    FOR i IN -months_back .. months_ahead LOOP
        lo := (first_month + make_interval(months => i))::date;
        hi := (lo + interval '1 month')::date;
        -- Month boundaries in UTC whatever the session's TimeZone is.
        lo_ts := lo::timestamp AT TIME ZONE 'UTC';
        hi_ts := hi::timestamp AT TIME ZONE 'UTC';
        part := format('event_%s', to_char(lo, 'YYYY_MM'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE event INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       part);
        EXECUTE format(
            'WITH moved AS (DELETE FROM event_default WHERE measured_at >= %L AND measured_at < %L '
            'RETURNING *) INSERT INTO %I SELECT * FROM moved',
            lo_ts, hi_ts, part);
        EXECUTE format('ALTER TABLE event ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part, lo_ts, hi_ts);
        RETURN NEXT part;
    END LOOP;
END $$;

SELECT ensure_event_partitions(2, 3);

-- One row per (event, owning huvudman): what delivery must still send. The event id is the
-- idempotency key receivers see.
CREATE TABLE delivery (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid NOT NULL,
    measured_at      timestamptz NOT NULL,
    huvudman         text NOT NULL REFERENCES huvudman (code),
    assignment_id    uuid,
    lane             text NOT NULL CHECK (lane IN ('alarm', 'bulk')),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'done', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, huvudman)
);
CREATE INDEX delivery_due ON delivery (lane, next_attempt_at) WHERE state = 'pending';
