-- The huvudman node's own storage (gateway/node/). Applied by `gateway node` at start, tracked
-- in node_schema_migration, never by `gateway migrate`. The node runs inside the huvudman's
-- network: this is the huvudman's copy, opened.
CREATE SCHEMA IF NOT EXISTS huvudman_node;

CREATE TABLE huvudman_node.copy (
    event_id        uuid PRIMARY KEY,           -- a redelivery finds its row: `duplicate`
    huvudman        text NOT NULL,              -- always this node's huvudman
    measured_at     timestamptz NOT NULL,
    kind            text NOT NULL,
    event_type      text NOT NULL,
    lane            text NOT NULL,
    content         jsonb NOT NULL,             -- the opened event
    assignment_ids  uuid[] NOT NULL,
    subjects        jsonb NOT NULL,             -- [{assignment_id, subject_ref}], refs opened
    routed_at       timestamptz,
    received_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX copy_measured_at ON huvudman_node.copy (measured_at);
CREATE INDEX copy_assignment ON huvudman_node.copy USING gin (assignment_ids);
