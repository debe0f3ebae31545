-- Whether the payment a decision was about is now declined or failed (ADR 88): what velocity
-- counts as a decline besides a refused decision, kept on the decision so that counting needs
-- no join to `payments` per counted row. A trigger keeps it equal to the payment's status on
-- every change; a decision stored later reads it from the payment.
ALTER TABLE risk_decisions ADD COLUMN subject_failed INTEGER NOT NULL DEFAULT 0;
UPDATE risk_decisions SET subject_failed = 1
    WHERE subject_id IN (SELECT id FROM payments WHERE status IN ('declined', 'failed'));

CREATE FUNCTION risk_decisions_follow_payment_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE risk_decisions
        SET subject_failed = CASE WHEN NEW.status IN ('declined', 'failed') THEN 1 ELSE 0 END
        WHERE subject_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER payments_status_reaches_risk_decisions AFTER UPDATE OF status ON payments
    FOR EACH ROW
    WHEN ((OLD.status IN ('declined', 'failed')) IS DISTINCT FROM (NEW.status IN ('declined', 'failed')))
    EXECUTE FUNCTION risk_decisions_follow_payment_status();
