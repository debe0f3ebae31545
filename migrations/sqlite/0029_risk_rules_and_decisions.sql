-- The risk rules (issue 19, ADR 62): one row per version of the rule set of a scope
-- (`merchant|jurisdiction`, `*` for any), so the history is the audit. Nodes read the
-- newest version of each scope at most once a second.
CREATE TABLE risk_rule_versions (
    scope TEXT NOT NULL,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, version)
);

-- Every pre-authorization decision with its inputs (ADR 63): the explanation for staff,
-- the velocity counters of later decisions (by player, IP and device), and the backtest's
-- replay of a draft rule set. A deposit's row is written in the payment's transaction; a
-- declined deposit's alone (no payment is stored for it).
CREATE TABLE risk_decisions (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    -- deposit | payout
    kind TEXT NOT NULL,
    -- The payment or payout decided on (a declined deposit's payment was never stored).
    subject_id TEXT NOT NULL,
    jurisdiction TEXT,
    ip TEXT,
    device TEXT,
    amount_minor INTEGER NOT NULL,
    -- approve | review | step_up | decline
    outcome TEXT NOT NULL,
    score INTEGER NOT NULL,
    -- The features as gathered (JSON object), replayed by the backtest.
    features TEXT NOT NULL,
    -- The decision with the fired rules and what they read (JSON).
    decision TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX risk_decisions_by_player ON risk_decisions (player_id, merchant_id, created_at_ms);
CREATE INDEX risk_decisions_by_ip ON risk_decisions (ip, created_at_ms) WHERE ip IS NOT NULL;
CREATE INDEX risk_decisions_by_device ON risk_decisions (device, created_at_ms) WHERE device IS NOT NULL;
CREATE INDEX risk_decisions_by_time ON risk_decisions (created_at_ms);

-- The risk decision on a deposit or payout (JSON), written with it.
ALTER TABLE payments ADD COLUMN risk TEXT;
ALTER TABLE payouts ADD COLUMN risk TEXT;
