-- Card deposits through Kassa's own card page (issue 20): one row per payment whose card was
-- submitted, inserted before the acquirer hears of it, so a second submission (a double
-- click, two tabs, two nodes) can never send a second purchase. No card data is stored here:
-- only the payment id and when.
CREATE TABLE card_submissions (
    payment_id TEXT PRIMARY KEY,
    submitted_at_ms BIGINT NOT NULL
);

-- The card vault (issue 20 item 3, ADR 50): a saved card is its ciphertext only. Envelope
-- encryption: the card (PAN and expiry) is sealed with AES-256-GCM under a data key of its
-- own; the data key is sealed under the master key named by key_id, which lives in the
-- config, never here. last4, expiry and bin are what may be shown and routed on. The CVC is
-- never stored.
CREATE TABLE vault_cards (
    token TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    last4 TEXT NOT NULL,
    expiry_yymm TEXT NOT NULL,
    bin TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX vault_cards_by_player ON vault_cards (merchant_id, player_id);
CREATE INDEX vault_cards_by_key ON vault_cards (key_id);
