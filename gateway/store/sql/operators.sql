-- Operators of the admin HTTP API (gateway/ownership/operators.py).

-- name: insert
INSERT INTO operator (name, token_sha256, roles, huvudman) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: by_token
SELECT name, roles, huvudman FROM operator WHERE token_sha256 = $1 AND enabled;

-- name: disable
UPDATE operator SET enabled = false, disabled_at = now() WHERE name = $1 AND enabled
RETURNING name;

-- name: listing
SELECT name, roles, huvudman, enabled, created_at, disabled_at FROM operator ORDER BY name;
