-- Alarms leave for their alarm centre while they are being committed (gateway/delivery/arc.py),
-- so an alarm's history is written after the fact: each request records when it was sent, and
-- whether the alarm's commit had been confirmed by then (the relay knows; event.stored_at is the
-- transaction's start, not its commit); `at` stays the answer's time.
ALTER TABLE arc_attempt ADD COLUMN sent_at timestamptz;
ALTER TABLE arc_attempt ADD COLUMN after_commit boolean;
