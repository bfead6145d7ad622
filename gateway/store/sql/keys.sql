-- Huvudmän's public keys (gateway/ownership/key_management.py, gateway/ownership/subjects.py).

-- name: active_pem
SELECT public_pem FROM huvudman_key WHERE huvudman = $1 AND retired_at IS NULL;

-- name: active_key_id
SELECT key_id FROM huvudman_key WHERE huvudman = $1 AND retired_at IS NULL;

-- name: insert
INSERT INTO huvudman_key (key_id, huvudman, suite, public_pem) VALUES ($1, $2, $3, $4)
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id;

-- name: retire
UPDATE huvudman_key SET retired_at = now()
WHERE huvudman = $1 AND retired_at IS NULL
RETURNING key_id;

-- name: listing
SELECT h.code, h.name, k.key_id, k.suite, k.created_at, k.retired_at
FROM huvudman h LEFT JOIN huvudman_key k ON k.huvudman = h.code
ORDER BY h.code, k.created_at;
