-- An append-only, hash-chained audit log: assignment and lifecycle changes, key operations,
-- erasures (and, later, every staff read). Ids only: never values, positions or subject
-- references. Each entry's hash covers the previous entry's hash, so editing, inserting or
-- removing an entry breaks the chain from that point on; `gateway audit verify` finds it.

CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}',
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);

-- The bytes an entry's hash covers. One definition, used to append and to verify.
CREATE FUNCTION audit_entry_bytes(seq bigint, at timestamptz, actor text, action text,
                                  target text, details jsonb, prev_hash bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT prev_hash || convert_to(concat_ws(E'\x1f', seq::text,
        to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor, action, target,
        details::text), 'UTF8')
$$;

-- Appends are serialised by a transaction-scoped advisory lock, so the chain never forks.
CREATE FUNCTION audit_append(p_actor text, p_action text, p_target text, p_details jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash bytea;
    new_at timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_advisory_xact_lock(7365481);
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    last_seq := coalesce(last_seq, 0) + 1;
    last_hash := coalesce(last_hash, '\x'::bytea);
    INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash)
    VALUES (last_seq, new_at, p_actor, p_action, p_target, p_details, last_hash,
            sha256(audit_entry_bytes(last_seq, new_at, p_actor, p_action, p_target, p_details,
                                     last_hash)));
    RETURN last_seq;
END $$;

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
