-- Retention drops a month's partitions by name (gateway/ownership/erasure.py): done here so the
-- statement stays in SQL and only an event partition can ever be named.
CREATE FUNCTION drop_event_partition(partition text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF partition !~ '^(event|event_copy)_[0-9]{4}_[0-9]{2}$' THEN
        RAISE EXCEPTION 'not an event partition: %', partition USING ERRCODE = '22023';
    END IF;
    EXECUTE format('DROP TABLE %I', partition);
END $$;
