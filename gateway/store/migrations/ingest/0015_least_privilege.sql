-- Least privilege (docs/operations.md, Database roles): the gateway runs as a member of
-- gateway_runtime, which may do what ingest, delivery, supervision and the admin commands do
-- and nothing more; migrations run as the schema's owner. gateway_runtime owns nothing, so it
-- cannot alter or drop a table or a trigger; it may read the audit log but append to it only
-- through audit_append, whose trigger refuses updates and deletes anyway; stored events are
-- never updated or deleted (retention drops whole partitions through drop_event_partition);
-- it has no access to the huvudman node's schema, where opened copies live when a node shares
-- the database (the demo). Every later migration that adds a table grants it here explicitly
-- (tests/store/test_privileges.py holds the whole matrix and fails on a table it does not know).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gateway_runtime') THEN
        BEGIN
            CREATE ROLE gateway_runtime NOLOGIN;
        EXCEPTION
            -- Another database of the same cluster created it meanwhile.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role gateway_runtime does not exist and % may not create it',
                    current_user
                    USING HINT = 'have it created (CREATE ROLE gateway_runtime NOLOGIN), then '
                                 'migrate again; see docs/operations.md';
        END;
    END IF;
END $$;

-- Nobody but the owner creates objects where the gateway's functions look them up.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO gateway_runtime;

GRANT SELECT, INSERT, UPDATE ON huvudman, device, assignment, huvudman_key, device_seen,
    operator TO gateway_runtime;
GRANT SELECT, INSERT, DELETE ON data_key, event_copy TO gateway_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON delivery TO gateway_runtime;
GRANT SELECT, INSERT ON event, incident, arc_attempt TO gateway_runtime;
GRANT SELECT ON audit_log, schema_migration TO gateway_runtime;
GRANT USAGE, SELECT ON SEQUENCE delivery_id_seq, incident_id_seq, arc_attempt_id_seq
    TO gateway_runtime;

-- What needs the owner's rights is done by the owner's functions, on these terms only.
ALTER FUNCTION audit_append(text, text, text, jsonb)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION ensure_event_partitions(integer, integer)
    SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION drop_event_partition(text)
    SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION audit_append(text, text, text, jsonb),
    ensure_event_partitions(integer, integer), drop_event_partition(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, jsonb),
    ensure_event_partitions(integer, integer), drop_event_partition(text) TO gateway_runtime;
