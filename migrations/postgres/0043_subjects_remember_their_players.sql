-- Which players each IP, device and card was seen with, and when last (ADR 94): the
-- velocity count's "other players in 30 days" (`ip_players_30d`, `device_players_30d`,
-- `card_players_30d`) reads a row per player here instead of every decision of the subject
-- in 30 days, which for a busy IP (a carrier's shared address) has no bound. `subject` is
-- the `risk_decisions` column (`ip`, `device`, `card_fingerprint`); as the count, only
-- the decisions it counts are remembered: a deposit's IP and device, a card's fingerprint
-- when it was submitted. A player seen again within a minute of the time on file is not
-- written again (a busy player's deposits would rewrite the row each time): the time kept
-- may be up to a minute early, which moves the 30 days' edge by as much.
CREATE TABLE risk_subject_players (
    merchant_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    value TEXT NOT NULL,
    player_id TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, subject, value, player_id)
);

INSERT INTO risk_subject_players (merchant_id, subject, value, player_id, last_seen_ms)
SELECT merchant_id, seen.subject, seen.value, player_id, MAX(created_at_ms)
FROM risk_decisions
CROSS JOIN LATERAL (VALUES
    ('ip', CASE WHEN kind = 'deposit' THEN ip END),
    ('device', CASE WHEN kind = 'deposit' THEN device END),
    ('card_fingerprint', CASE WHEN kind = 'card' THEN card_fingerprint END)
) AS seen (subject, value)
WHERE seen.value IS NOT NULL
GROUP BY merchant_id, seen.subject, seen.value, player_id;

CREATE FUNCTION risk_decisions_remember_subject_players() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO risk_subject_players AS known (merchant_id, subject, value, player_id, last_seen_ms)
    SELECT NEW.merchant_id, seen.subject, seen.value, NEW.player_id, NEW.created_at_ms
    FROM (VALUES
        ('ip', CASE WHEN NEW.kind = 'deposit' THEN NEW.ip END),
        ('device', CASE WHEN NEW.kind = 'deposit' THEN NEW.device END),
        ('card_fingerprint', CASE WHEN NEW.kind = 'card' THEN NEW.card_fingerprint END)
    ) AS seen (subject, value)
    WHERE seen.value IS NOT NULL
    ON CONFLICT (merchant_id, subject, value, player_id)
        DO UPDATE SET last_seen_ms = EXCLUDED.last_seen_ms
        WHERE EXCLUDED.last_seen_ms >= known.last_seen_ms + 60000;
    RETURN NULL;
END;
$$;
CREATE TRIGGER risk_decisions_reach_subject_players AFTER INSERT ON risk_decisions
    FOR EACH ROW
    WHEN (NEW.kind IN ('deposit', 'card'))
    EXECUTE FUNCTION risk_decisions_remember_subject_players();
