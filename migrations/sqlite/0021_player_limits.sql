-- Responsible-gambling deposit limits, one row per player and period (issue 19 item 6): the
-- limit in force and an increase waiting for its cooling-off (`pending_applies_at_ms` set;
-- `pending_amount_minor` NULL then removes the limit).
CREATE TABLE player_limits (
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_minor INTEGER,
    pending_amount_minor INTEGER,
    pending_applies_at_ms INTEGER,
    set_by TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, player_id, kind, period)
);
