-- The runtime role may drop event partitions and create them (0015: SECURITY DEFINER), for
-- retention and for the months ahead. A compromised gateway host must not turn that into
-- deleting what was stored recently, or into creating tables without end: a partition of the
-- current or the previous month is never dropped here (retention keeps far longer; an owner
-- can still drop one by hand), and at most 49 months of partitions are made at a time.
CREATE OR REPLACE FUNCTION drop_event_partition(partition text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF partition !~ '^(event|event_copy)_[0-9]{4}_[0-9]{2}$' THEN
        RAISE EXCEPTION 'not an event partition: %', partition USING ERRCODE = '22023';
    END IF;
    IF to_date(right(partition, 7), 'YYYY_MM')
            >= (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date THEN
        RAISE EXCEPTION 'partition % is too recent to drop', partition USING ERRCODE = '22023';
    END IF;
    EXECUTE format('DROP TABLE %I', partition);
END $$;

CREATE OR REPLACE FUNCTION ensure_event_partitions(months_back int, months_ahead int)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    first_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    lo date;
    lo_ts timestamptz;
    hi_ts timestamptz;
    parent text;
    part text;
BEGIN
    IF months_back + months_ahead NOT BETWEEN 0 AND 48
            OR abs(months_back) > 1200 OR abs(months_ahead) > 1200 THEN
        RAISE EXCEPTION 'event partitions: at most 49 months within a century, not % back '
            'and % ahead', months_back, months_ahead USING ERRCODE = '22023';
    END IF;
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
