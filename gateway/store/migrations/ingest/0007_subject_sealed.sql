-- The subject reference leaves the gateway's clear storage (gateway/crypto/subject.py): an
-- assignment keeps a keyed pseudonym (`subject_key`, to find a person's keys on erasure) and
-- the reference sealed to its huvudman (`subject_sealed`, for the huvudman's node only).
ALTER TABLE assignment RENAME COLUMN subject_ref TO subject_key;
ALTER TABLE assignment DROP CONSTRAINT IF EXISTS assignment_subject_ref_check;
ALTER TABLE assignment ADD COLUMN subject_sealed bytea;
-- No deployment predates this migration; any development rows still hold a reference in
-- clear, which is replaced here by a value that links nothing (those rows cannot be erased
-- by reference any more, which is acceptable for test data and nothing else).
UPDATE assignment SET subject_key = 'unconverted:' || md5(subject_key);
CREATE INDEX assignment_subject ON assignment (huvudman, subject_key);
