-- The device lifecycle (docs/lifecycle.md) and the operators of the admin HTTP API.

-- When the device entered its current state: a reissue may not start before the device was
-- made ready again, so readings measured during return and reconditioning reach nobody.
ALTER TABLE device ADD COLUMN state_since timestamptz NOT NULL DEFAULT now();

-- An assignment that had not started when its device was returned or reconditioned is ended at
-- its own start: an empty interval [t, t) that covers no reading, kept as history, never
-- deleted. Half-open intervals make that exact (gateway/assignment.py, Assignment.covers).
ALTER TABLE assignment DROP CONSTRAINT assignment_check;
ALTER TABLE assignment ADD CONSTRAINT assignment_check
    CHECK (valid_to IS NULL OR valid_to >= valid_from);

-- Operators of the admin API (HMC staff or their tools). Like device credentials, a token is
-- 256 random bits stored only as its SHA-256: a slow hash buys nothing for a random secret.
CREATE TABLE operator (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
