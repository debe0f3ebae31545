-- The velocity count (ADR 63) reads each counted decision's merchant, kind, subject, player,
-- outcome, failure and amount. With them in the subject's index the count never visits the
-- table, whose rows carry ~13 KB of JSON each (ADR 93; perf-log note 50). PostgreSQL keeps
-- its narrow indexes: its index-only scans need pages a vacuum has marked all-visible, which
-- the last day's decisions rarely are.
DROP INDEX risk_decisions_by_player;
CREATE INDEX risk_decisions_by_player ON risk_decisions
    (player_id, merchant_id, created_at_ms, kind, subject_id, outcome, subject_failed, amount_minor);
DROP INDEX risk_decisions_by_ip;
CREATE INDEX risk_decisions_by_ip ON risk_decisions
    (ip, created_at_ms, merchant_id, kind, subject_id, player_id, outcome, subject_failed, amount_minor)
    WHERE ip IS NOT NULL;
DROP INDEX risk_decisions_by_device;
CREATE INDEX risk_decisions_by_device ON risk_decisions
    (device, created_at_ms, merchant_id, kind, subject_id, player_id, outcome, subject_failed, amount_minor)
    WHERE device IS NOT NULL;
DROP INDEX risk_decisions_by_card;
CREATE INDEX risk_decisions_by_card ON risk_decisions
    (card_fingerprint, created_at_ms, merchant_id, kind, subject_id, player_id, outcome, subject_failed, amount_minor)
    WHERE card_fingerprint IS NOT NULL;
DROP INDEX risk_decisions_by_email;
CREATE INDEX risk_decisions_by_email ON risk_decisions
    (email_key, created_at_ms, merchant_id, kind, subject_id, player_id, outcome, subject_failed, amount_minor)
    WHERE email_key IS NOT NULL;
