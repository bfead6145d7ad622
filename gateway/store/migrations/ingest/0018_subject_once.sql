-- The sealed subject reference once per assignment (issue 12, docs/delivery.md format 2): a
-- copy no longer carries the assignment's sealed reference (about 1.5 KB), only its id and a
-- digest; delivery sends the reference itself once to each sink, from `assignment`. A copy
-- that came under more than one assignment of its huvudman (HSL and SoL) names the others
-- here, so delivery knows every reference the receiver needs without opening anything.
ALTER TABLE delivery ADD COLUMN more_assignment_ids uuid[];
