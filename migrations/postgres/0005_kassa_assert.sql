-- Fails the statement (and so the transaction) with `message` unless `ok`. The wallet
-- writer sends COMMIT right behind its journal statement without waiting for its answer
-- (ADR 15); the journal's own checks (as many transfers and balances written as the ledger
-- decided) must therefore fail inside the statement, so that the COMMIT finds an aborted
-- transaction and rolls it back.
CREATE FUNCTION kassa_assert(ok boolean, message text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION '%', message;
    END IF;
    RETURN true;
END;
$$;
