-- The hash-chained audit log (gateway/ownership/audit.py; the chain itself is migration 0005).

-- name: append
SELECT audit_append($1, $2, $3, $4::jsonb);

-- name: first_break
-- The first entry whose stored prev_hash or hash does not match a recomputation, or nothing.
WITH chain AS (
    SELECT seq, prev_hash, hash,
           lag(hash, 1, '\x'::bytea) OVER (ORDER BY seq) AS expected_prev,
           lag(seq, 1, 0::bigint) OVER (ORDER BY seq) AS previous_seq,
           sha256(audit_entry_bytes(seq, at, actor, action, target, details, prev_hash))
               AS recomputed
    FROM audit_log
)
SELECT seq,
       CASE WHEN seq <> previous_seq + 1 THEN 'an entry before it is missing'
            WHEN prev_hash <> expected_prev THEN 'its link to the previous entry is broken'
            ELSE 'its content was changed' END AS problem
FROM chain
WHERE seq <> previous_seq + 1 OR prev_hash <> expected_prev OR hash <> recomputed
ORDER BY seq LIMIT 1;

-- name: head
SELECT count(*) AS entries, max(seq) AS last_seq,
       (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS head
FROM audit_log;

-- name: recent
SELECT seq, at, actor, action, target, details FROM audit_log
ORDER BY seq DESC LIMIT $1;
