-- Who owns what: huvudmän, the device fleet, and assignments of devices to people.

CREATE TABLE huvudman (
    code        text PRIMARY KEY CHECK (code ~ '^[0-9]{2}([0-9]{2})?$'),
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('region', 'kommun')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Credentials are stored only as SHA-256 of a 256-bit random token: a slow password hash buys
-- nothing for a random secret and would cost a CPU-bound hash on every HTTP request.
CREATE TABLE device (
    id                  text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    device_type         text NOT NULL,
    model               text,
    credential_sha256   bytea CHECK (credential_sha256 IS NULL OR length(credential_sha256) = 32),
    state               text NOT NULL DEFAULT 'in_stock'
                        CHECK (state IN ('in_stock', 'assigned', 'returned', 'reconditioning',
                                         'retired')),
    heartbeat_interval  interval,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX device_credential ON device (credential_sha256)
    WHERE credential_sha256 IS NOT NULL;

CREATE TABLE assignment (
    id                uuid PRIMARY KEY,
    device_id         text NOT NULL REFERENCES device (id),
    huvudman          text NOT NULL REFERENCES huvudman (code),
    subject_ref       text NOT NULL CHECK (length(subject_ref) BETWEEN 1 AND 200),
    legal_basis       text NOT NULL CHECK (legal_basis IN ('HSL', 'SoL', 'LSS')),
    kinds             text[] NOT NULL CHECK (cardinality(kinds) > 0),
    valid_from        timestamptz NOT NULL,
    valid_to          timestamptz CHECK (valid_to IS NULL OR valid_to > valid_from),
    alarm_route       text,
    position_consent  boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assignment_device ON assignment (device_id, valid_from);

-- Ingest keeps the registry in memory; any change tells every instance to reload it.
CREATE FUNCTION notify_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registry_changed', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER huvudman_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON huvudman
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER device_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON device
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
CREATE TRIGGER assignment_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON assignment
    FOR EACH STATEMENT EXECUTE FUNCTION notify_registry_changed();
