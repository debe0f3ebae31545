-- A deposit start of a player with a deposit limit reserves its amount, under the lock of
-- the player's limit rows, while the provider is asked (ADR 65): two starts of one player
-- at the same instant, on one node or two, see each other. The row goes in the
-- transaction that records the deposit; one left by a crash counts until it expires.
CREATE TABLE deposit_reservations (
    payment_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    player_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX deposit_reservations_by_player ON deposit_reservations (merchant_id, player_id);
