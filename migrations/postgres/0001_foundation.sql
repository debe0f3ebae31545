-- Merchants (brands), API keys, players, the double-entry ledger and idempotency keys.
-- Times are milliseconds since the Unix epoch; money is integer minor units.

CREATE TABLE merchants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Keys are stored as SHA-256 hashes; merchant keys have a merchant, admin keys have roles.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    merchant_id TEXT REFERENCES merchants (id),
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    CHECK (merchant_id IS NOT NULL OR roles <> '')
);

CREATE TABLE ledger_accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    floor TEXT NOT NULL CHECK (floor IN ('non_negative', 'unbounded')),
    balance_minor BIGINT NOT NULL DEFAULT 0,
    -- The ledger refuses to take player money below zero; the database refuses it again.
    CHECK (floor = 'unbounded' OR balance_minor >= 0),
    UNIQUE (merchant_id, kind, owner, currency)
);

CREATE TABLE players (
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    player_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    country TEXT NOT NULL,
    jurisdiction TEXT,
    kyc_status TEXT NOT NULL CHECK (kyc_status IN ('none', 'pending', 'verified', 'rejected')),
    birth_date TEXT,
    cash_account_id BIGINT NOT NULL REFERENCES ledger_accounts (id),
    hold_account_id BIGINT NOT NULL REFERENCES ledger_accounts (id),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, player_id)
);

CREATE TABLE ledger_entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    txn_id TEXT NOT NULL,
    label TEXT NOT NULL,
    operation TEXT NOT NULL,
    status TEXT NOT NULL,
    fingerprint TEXT,
    currency TEXT,
    amount_minor BIGINT NOT NULL,
    debit_account_id BIGINT REFERENCES ledger_accounts (id),
    credit_account_id BIGINT REFERENCES ledger_accounts (id),
    hold_account_id BIGINT REFERENCES ledger_accounts (id),
    ref_txn_id TEXT,
    subject_account_id BIGINT REFERENCES ledger_accounts (id),
    subject_balance_after_minor BIGINT,
    player_id TEXT,
    round_id TEXT,
    reference TEXT,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (merchant_id, txn_id)
);
CREATE INDEX ledger_entries_by_player ON ledger_entries (merchant_id, player_id, id);

CREATE TABLE ledger_transfers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    debit_account_id BIGINT NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id BIGINT NOT NULL REFERENCES ledger_accounts (id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    UNIQUE (merchant_id, txn_id, seq),
    FOREIGN KEY (merchant_id, txn_id) REFERENCES ledger_entries (merchant_id, txn_id)
);

-- The journal is append-only: history is corrected by new entries, never by edits.
CREATE FUNCTION ledger_transfers_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_transfers is append-only';
END;
$$;
CREATE TRIGGER ledger_transfers_no_update_or_delete BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_transfers_append_only();

CREATE TABLE idempotency_keys (
    merchant_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    response_status BIGINT,
    response_body TEXT,
    locked_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
