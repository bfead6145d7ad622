-- Device supervision (docs/supervision.md): when each device was last heard, and whether it is
-- in a low-battery period, so a restarted ingest (or another instance) knows who fell silent.
--
-- A table of its own rather than columns on `device`: ingest writes it every few seconds, and
-- any UPDATE of `device` fires `device_changed`, which makes every instance reload its whole
-- registry. Keeping the hot column off `device` keeps those reloads for real registry changes.
CREATE TABLE device_seen (
    device_id          text PRIMARY KEY REFERENCES device (id) ON DELETE CASCADE,
    last_seen_at       timestamptz NOT NULL,
    -- Start of the current low-battery period (the first low report); NULL when not low.
    battery_low_since  timestamptz
);
