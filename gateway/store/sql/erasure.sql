-- Crypto-shredding and retention (gateway/ownership/erasure.py).

-- name: subject_keys
SELECT key_id FROM data_key WHERE huvudman = $1 AND subject_pseudonym = $2;

-- name: huvudman_keys
SELECT key_id FROM data_key WHERE huvudman = $1;

-- name: epoch_keys
SELECT key_id FROM data_key WHERE epoch < $1 AND ($2::text IS NULL OR huvudman = $2);

-- name: copies_under_keys
-- How many sealed copies the given data keys open (a scan: erasure is rare and deliberate).
SELECT count(*) FROM event_copy WHERE key_id = ANY($1::bytea[]);

-- name: lock_keys
-- Held until the erasure commits: batches being written finish first (their copies predate
-- the erasure), later ones see the keys gone (events.sql, write_batch).
LOCK TABLE data_key IN SHARE ROW EXCLUSIVE MODE;

-- name: delete_keys
DELETE FROM data_key WHERE key_id = ANY($1::bytea[]);

-- name: forget_subject_refs
-- The sealed reference goes; the pseudonym stays so the assignment's history still holds.
UPDATE assignment SET subject_sealed = NULL
WHERE huvudman = $1 AND subject_key = $2 AND subject_sealed IS NOT NULL
RETURNING id;

-- name: old_partitions
SELECT c.relname AS partition
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname IN ('event', 'event_copy') AND c.relname ~ '_[0-9]{4}_[0-9]{2}$'
  AND to_date(right(c.relname, 7), 'YYYY_MM') < $1::date
ORDER BY c.relname;

-- name: drop_partition
SELECT drop_event_partition($1);

-- name: expired_quarantine
SELECT count(*) FROM event_copy WHERE expires_at < $1;

-- name: purge_quarantine
DELETE FROM event_copy WHERE expires_at < $1;

-- name: notify_keys_erased
-- Ingest processes drop their cached data keys (gateway/roles/ingest.py listens).
SELECT pg_notify('keys_erased', $1);
