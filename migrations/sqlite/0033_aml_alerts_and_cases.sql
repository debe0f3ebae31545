-- AML monitoring after money moved (issue 19, ADR 70): alerts raised by the scenarios of
-- kassa_core::aml, grouped into one open case per player, and the case's audit trail.

-- A player's cases; at most one not closed, which every new alert joins.
CREATE TABLE aml_cases (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    -- open | investigating | escalated | reported | closed
    status TEXT NOT NULL,
    close_reason TEXT,
    assignee TEXT,
    opened_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER
);
CREATE UNIQUE INDEX aml_cases_one_open_per_player ON aml_cases (merchant_id, player_id)
    WHERE status <> 'closed';
CREATE INDEX aml_cases_by_time ON aml_cases (opened_at_ms, id);
CREATE INDEX aml_cases_by_player ON aml_cases (player_id, merchant_id, opened_at_ms);

-- One row per pattern: the dedupe key (scenario and window, or scenario and payout) is
-- unique per player, so looking at the same pattern again raises nothing.
CREATE TABLE aml_alerts (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    scenario TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    case_id TEXT NOT NULL REFERENCES aml_cases (id),
    window_start_ms INTEGER NOT NULL,
    window_end_ms INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    -- The payments and payouts of the pattern (JSON array of ids).
    transactions TEXT NOT NULL,
    -- The figures the scenario compared (JSON object).
    figures TEXT NOT NULL,
    -- The event whose monitoring found it (`payment.captured:pay_…`).
    found_after TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX aml_alerts_one_per_pattern ON aml_alerts (merchant_id, player_id, dedupe_key);
CREATE INDEX aml_alerts_by_case ON aml_alerts (case_id, created_at_ms);
CREATE INDEX aml_alerts_by_time ON aml_alerts (created_at_ms, id);
CREATE INDEX aml_alerts_by_player ON aml_alerts (player_id, merchant_id, scenario);

-- Everything that happened to a case: opened, an alert joined, assigned, a note, a move
-- (from → to), an export. Append-only: the audit trail.
CREATE TABLE aml_case_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT NOT NULL REFERENCES aml_cases (id),
    -- opened | alert | assigned | note | transition | exported
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    detail TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX aml_case_events_by_case ON aml_case_events (case_id, id);

-- The shared-instrument scenario asks how many players use one payout destination or one
-- saved card (BIN, last four, expiry); without these it would read all of a merchant's rows.
-- Led by the instrument, so that a player's own rows are still found by player.
CREATE INDEX payouts_by_destination ON payouts (destination, merchant_id)
    WHERE destination IS NOT NULL;
CREATE INDEX vault_cards_by_card ON vault_cards (bin, last4, expiry_yymm, merchant_id);
