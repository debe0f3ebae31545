-- Self-exclusion and time-outs (issue 19 item 6, ADR 57): one exclusion in force per player,
-- set by the player or the operator, effective at once, never shortened. While it is in
-- force the player's account_status is self_excluded (deposits and bets refused, withdrawals
-- allowed); a job ends it at ends_at_ms (NULL: indefinite).
CREATE TABLE player_exclusions (
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    starts_at_ms BIGINT NOT NULL,
    ends_at_ms BIGINT,
    set_by TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (merchant_id, player_id)
);
CREATE INDEX player_exclusions_by_end ON player_exclusions (ends_at_ms);
