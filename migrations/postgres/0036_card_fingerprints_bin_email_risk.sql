-- Risk features of issue 19 item 2 (ADRs 74-76, docs/risk.md): a saved card's keyed
-- fingerprint (HMAC-SHA256 of the PAN under [vault] fingerprint_key, never the PAN and never
-- a plain hash), so one card saved twice, or by two players, is one card; the same
-- fingerprint and the player's email key on every risk decision, so velocity is counted per
-- card and per email address; and the player's email, stored normalised.
ALTER TABLE vault_cards ADD COLUMN fingerprint TEXT;
CREATE INDEX vault_cards_by_fingerprint ON vault_cards (merchant_id, fingerprint)
    WHERE fingerprint IS NOT NULL;

ALTER TABLE risk_decisions ADD COLUMN card_fingerprint TEXT;
ALTER TABLE risk_decisions ADD COLUMN email_key TEXT;
CREATE INDEX risk_decisions_by_card ON risk_decisions (card_fingerprint, created_at_ms)
    WHERE card_fingerprint IS NOT NULL;
CREATE INDEX risk_decisions_by_email ON risk_decisions (email_key, created_at_ms)
    WHERE email_key IS NOT NULL;
-- A start decided again (a retry of the same payment, a card submitted again) replaces its
-- own earlier decision, and the card page finds the start's decision: by subject.
CREATE INDEX risk_decisions_by_subject ON risk_decisions (subject_id);

-- The player's email as given, trimmed and lowercased; email_key is what two addresses of
-- one mailbox share (no +tag; no dots at Gmail), compared across the merchant's players.
ALTER TABLE players ADD COLUMN email TEXT;
ALTER TABLE players ADD COLUMN email_key TEXT;
CREATE INDEX players_by_email_key ON players (merchant_id, email_key)
    WHERE email_key IS NOT NULL;
