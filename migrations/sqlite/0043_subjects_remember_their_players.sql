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
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, subject, value, player_id)
) WITHOUT ROWID;

INSERT INTO risk_subject_players (merchant_id, subject, value, player_id, last_seen_ms)
SELECT merchant_id, 'ip', ip, player_id, MAX(created_at_ms) FROM risk_decisions
    WHERE kind = 'deposit' AND ip IS NOT NULL GROUP BY merchant_id, ip, player_id;
INSERT INTO risk_subject_players (merchant_id, subject, value, player_id, last_seen_ms)
SELECT merchant_id, 'device', device, player_id, MAX(created_at_ms) FROM risk_decisions
    WHERE kind = 'deposit' AND device IS NOT NULL GROUP BY merchant_id, device, player_id;
INSERT INTO risk_subject_players (merchant_id, subject, value, player_id, last_seen_ms)
SELECT merchant_id, 'card_fingerprint', card_fingerprint, player_id, MAX(created_at_ms)
    FROM risk_decisions WHERE kind = 'card' AND card_fingerprint IS NOT NULL
    GROUP BY merchant_id, card_fingerprint, player_id;

CREATE TRIGGER risk_decisions_reach_subject_players AFTER INSERT ON risk_decisions
    WHEN NEW.kind IN ('deposit', 'card')
BEGIN
    INSERT INTO risk_subject_players (merchant_id, subject, value, player_id, last_seen_ms)
    SELECT NEW.merchant_id, seen.subject, seen.value, NEW.player_id, NEW.created_at_ms
    FROM (SELECT 'ip' AS subject, CASE WHEN NEW.kind = 'deposit' THEN NEW.ip END AS value
          UNION ALL SELECT 'device', CASE WHEN NEW.kind = 'deposit' THEN NEW.device END
          UNION ALL SELECT 'card_fingerprint',
              CASE WHEN NEW.kind = 'card' THEN NEW.card_fingerprint END) AS seen
    WHERE seen.value IS NOT NULL
    ON CONFLICT (merchant_id, subject, value, player_id)
        DO UPDATE SET last_seen_ms = excluded.last_seen_ms
        WHERE excluded.last_seen_ms >= last_seen_ms + 60000;
END;
