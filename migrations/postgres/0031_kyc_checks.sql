-- KYC levels and checks through an ID provider (issue 19 item 5, ADR 66). A player has one
-- status per level (basic: identity and document; enhanced: plus source of funds); a level
-- without a row reads from players.kyc_status (basic) or not_started (enhanced). Each check
-- opened at the provider is a row of kyc_checks; at most one is open (pending) per player
-- and level. Time to verify is completed_at_ms - requested_at_ms.
CREATE TABLE player_kyc_levels (
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('basic', 'enhanced')),
    status TEXT NOT NULL CHECK (status IN ('not_started', 'pending', 'verified', 'rejected', 'resubmission_requested')),
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, player_id, level)
);
CREATE TABLE kyc_checks (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('basic', 'enhanced')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'rejected', 'resubmission_requested')),
    reason TEXT NOT NULL CHECK (reason IN ('first_withdrawal', 'risk_step_up', 'cdd_threshold', 'operator')),
    provider TEXT NOT NULL,
    applicant_id TEXT NOT NULL,
    verification_url TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    completed_at_ms BIGINT,
    result_reason TEXT,
    document_checks TEXT,
    provider_event_id TEXT
);
CREATE UNIQUE INDEX kyc_checks_one_open_per_level ON kyc_checks (merchant_id, player_id, level)
    WHERE status = 'pending';
CREATE INDEX kyc_checks_by_player ON kyc_checks (merchant_id, player_id, requested_at_ms);
CREATE INDEX kyc_checks_by_applicant ON kyc_checks (provider, applicant_id);
