-- Withdrawals (payouts), their history, a player's account status for responsible gambling,
-- and switches that change behaviour without a deploy.

-- active | self_excluded (may still withdraw) | blocked (may not).
ALTER TABLE players ADD COLUMN account_status TEXT NOT NULL DEFAULT 'active';

CREATE TABLE payouts (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    player_id TEXT NOT NULL,
    provider TEXT,
    provider_reference TEXT,
    method TEXT NOT NULL,
    destination TEXT,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    -- Why checks sent it to review, as a JSON array of codes.
    review_reasons TEXT NOT NULL DEFAULT '[]',
    failure_reason TEXT,
    jurisdiction TEXT,
    eta_hours BIGINT NOT NULL,
    reviewed_by TEXT,
    review_note TEXT,
    reviewed_at_ms BIGINT,
    send_attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    FOREIGN KEY (merchant_id, player_id) REFERENCES players (merchant_id, player_id)
);
CREATE INDEX payouts_by_player ON payouts (merchant_id, player_id, created_at_ms);
CREATE INDEX payouts_by_status ON payouts (status, next_attempt_at_ms);

CREATE TABLE payout_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payout_id TEXT NOT NULL REFERENCES payouts (id),
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT,
    actor TEXT,
    detail TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX payout_events_by_payout ON payout_events (payout_id, id);

CREATE TABLE switches (
    name TEXT PRIMARY KEY,
    enabled BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
