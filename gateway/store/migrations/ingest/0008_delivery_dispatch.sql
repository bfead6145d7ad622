-- Delivery dispatch (docs/delivery.md): when a delivery ended (done or dead), for operators and
-- for purging old dead letters; the dead-letter queue listed without scanning done rows; and a
-- NOTIFY on `delivery_alarm` when an alarm is queued, so every instance's alarm lane wakes at
-- commit. The trigger fires only for alarm rows (WHEN), so bulk inserts pay nothing for it;
-- PostgreSQL folds identical notifications of one transaction into one.
ALTER TABLE delivery ADD COLUMN finished_at timestamptz;
CREATE INDEX delivery_dead ON delivery (huvudman, created_at) WHERE state = 'dead';

CREATE FUNCTION notify_delivery_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('delivery_alarm', '');
    RETURN NULL;
END $$;

CREATE TRIGGER delivery_alarm_queued AFTER INSERT ON delivery
    FOR EACH ROW WHEN (NEW.lane = 'alarm') EXECUTE FUNCTION notify_delivery_alarm();
