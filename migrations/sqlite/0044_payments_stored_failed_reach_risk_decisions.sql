-- A payment may be stored already declined or failed: a start records its payment as the
-- provider's answer left it, in one statement (ADR 95), so a start the provider declined at
-- once, or whose provider failed, is never updated into that status. Its decision learns it
-- as on a later change (ADR 88), so velocity counts it as a decline.
CREATE TRIGGER payments_stored_failed_reach_risk_decisions AFTER INSERT ON payments
    WHEN NEW.status IN ('declined', 'failed')
BEGIN
    UPDATE risk_decisions SET subject_failed = 1 WHERE subject_id = NEW.id;
END;
