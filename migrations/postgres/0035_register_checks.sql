-- National self-exclusion registers (GAMSTOP, Spelpaus; issue 19 item 6, ADR 73).

-- The identity a register check sends, as the operator gave it: personal data, kept to the
-- fields the registers ask for and never logged. The birth date is the player's own
-- (players.birth_date), not a second copy.
CREATE TABLE player_identities (
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    email TEXT,
    postcode TEXT,
    mobile TEXT,
    national_id TEXT,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, player_id)
);

-- The register's latest answer per player: a deposit reads it instead of asking again while
-- it is recent, and every node's list of players who may not bet reads the excluded ones
-- (through the partial index) once a second.
CREATE TABLE player_register_status (
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    register TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('excluded', 'not_excluded', 'previously_excluded')),
    checked_at_ms BIGINT NOT NULL,
    check_id TEXT NOT NULL,
    PRIMARY KEY (merchant_id, player_id)
);
CREATE INDEX player_register_status_excluded ON player_register_status (outcome)
    WHERE outcome = 'excluded';

-- Every question put to a register, answered or not: the audit trail. `outcome` is the
-- answer, or `unavailable` when none came (the error says why, without personal data).
CREATE TABLE register_checks (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    register TEXT NOT NULL,
    account_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,
    register_reference TEXT,
    error TEXT,
    checked_at_ms BIGINT NOT NULL
);
CREATE INDEX register_checks_by_player ON register_checks (merchant_id, player_id, checked_at_ms);
