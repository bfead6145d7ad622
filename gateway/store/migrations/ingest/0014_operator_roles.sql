-- Operators of the admin API act within roles (gateway/ownership/operators.py): HMC's tasks
-- (inventory, dispatch, workshop, or admin for all of them) or a huvudman's integrator, who
-- acts only on that huvudman's own assignments. Operators made before roles existed could do
-- everything: they keep that as admin until they are replaced by narrower ones.
ALTER TABLE operator
    ADD COLUMN roles text[] NOT NULL DEFAULT '{admin}',
    ADD COLUMN huvudman text REFERENCES huvudman (code);
ALTER TABLE operator ALTER COLUMN roles DROP DEFAULT;
ALTER TABLE operator ADD CONSTRAINT operator_roles CHECK (
    cardinality(roles) > 0
    AND roles <@ ARRAY['admin', 'inventory', 'dispatch', 'workshop', 'integrator']
    AND (huvudman IS NOT NULL) = (roles = ARRAY['integrator']));
