-- Delivery format 2 (docs/delivery.md): an assignment's subject reference arrives once, in a
-- `subject` line, instead of inside every copy. The node keeps it opened, with the digest of
-- the sealed reference it came as, which each copy names and is checked against.
CREATE TABLE huvudman_node.subject (
    assignment_id  uuid PRIMARY KEY,
    huvudman       text NOT NULL,               -- always this node's huvudman
    digest         bytea NOT NULL,              -- subject_digest(the sealed reference)
    subject_ref    text NOT NULL,               -- opened: the huvudman's own reference
    received_at    timestamptz NOT NULL DEFAULT now()
);
