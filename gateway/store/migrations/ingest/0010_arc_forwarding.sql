-- Alarm forwarding to alarm receiving centres over SCAIP (docs/delivery.md, "Alarm centres").
-- A delivery row now says what it carries: the owner's sealed copy to the owner's sink
-- ('owner'), or an alarm to the alarm centre its route names ('arc'), which the alarm relay
-- sends from the extra copy sealed to it (recipient 'hmc-alarm-relay'). A constant default
-- keeps this ALTER instant on a full table.
ALTER TABLE delivery ADD COLUMN target text NOT NULL DEFAULT 'owner'
    CHECK (target IN ('owner', 'arc'));
-- Which alarm centre took it, how it answered, and when: the alarm's history.
CREATE TABLE arc_attempt (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid NOT NULL,
    receiver     text NOT NULL,
    arc          text NOT NULL,     -- 'primary' or 'secondary'
    outcome      text NOT NULL,     -- 'accepted', 'hold', 'busy', 'not_treated', 'no_answer', ...
    snu          integer,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX arc_attempt_event ON arc_attempt (event_id);
-- The relay's lease updates and settlements find ARC rows by event; only those are indexed.
CREATE INDEX delivery_arc ON delivery (event_id) WHERE target = 'arc';
