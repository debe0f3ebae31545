-- The inbound delivery log becomes searchable, a dead-letter queue and a replay audit (issue
-- 18, items 1 and 2; ADR 45).
-- source: which inbound source the delivery came through ('http' today; ISO 8583 advices,
--   WebSocket events and SMPP receipts share the log later).
-- source_address: the peer address it came from (the IP allow-list's input).
-- payout_id: the payout a payout event names (such rows used to keep it in payment_id).
-- raw_body_exact: the body exactly as received, binary-safe (a replay checks the signature on
--   these bytes); raw_body stays for rows written before, which kept a lossy text.
-- replay_of / replayed_by: a replay is a row of its own, linked to the delivery it ran again,
--   with the admin key that asked for it; resolved_by names the replay that settled a
--   dead-lettered delivery.
ALTER TABLE webhook_deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'http';
ALTER TABLE webhook_deliveries ADD COLUMN source_address TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN payout_id TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN raw_body_exact BYTEA;
ALTER TABLE webhook_deliveries ADD COLUMN replay_of TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN replayed_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN resolved_by TEXT;
UPDATE webhook_deliveries SET payout_id = payment_id, payment_id = NULL WHERE substr(payment_id, 1, 3) = 'po_';
CREATE INDEX webhook_deliveries_by_payout ON webhook_deliveries (payout_id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_by_provider ON webhook_deliveries (provider, received_at_ms);
CREATE INDEX webhook_deliveries_by_outcome ON webhook_deliveries (outcome, received_at_ms);
CREATE INDEX webhook_deliveries_by_replay_of ON webhook_deliveries (replay_of);
