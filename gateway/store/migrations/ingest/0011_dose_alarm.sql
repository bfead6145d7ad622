-- Whether a missed medicine dose is an alarm for this person (docs/lifecycle.md, "Missed doses
-- as alarms"; gateway/dose_alarms.py). Off by default: every existing assignment keeps getting a
-- missed dose as a MEDICATION event, as before. A constant default keeps the ALTER instant.
ALTER TABLE assignment ADD COLUMN dose_alarm boolean NOT NULL DEFAULT false;

-- The same rule the CLI and the admin API check, kept by the database too, so no path (config
-- file, hand-written SQL) can make a missed dose an alarm that has nowhere to go: it must be
-- medication data the assignment receives, and someone must be named to act on it.
ALTER TABLE assignment ADD CONSTRAINT assignment_dose_alarm_check
    CHECK (NOT dose_alarm OR (alarm_route IS NOT NULL AND alarm_route <> ''
                              AND 'medication' = ANY (kinds)));
