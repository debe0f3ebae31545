-- Wager, loss and session-time limits at the ledger boundary (issue 19 item 6, ADR 77).
-- A player with such a limit keeps its state (the limits and hourly/daily usage buckets,
-- JSON) on the player's cash account, so the wallet writer reads it with the account it
-- locks anyway and writes it back with the batch; NULL for every other account, which then
-- costs nothing. The limits themselves live in player_limits (kinds wager, loss, session).
ALTER TABLE ledger_accounts ADD COLUMN play_state TEXT;
-- A bet refused by such a limit is recorded (status limit_refused, nothing moved) with the
-- refusal it was answered, so that a replay of its txn_id answers the same 402.
ALTER TABLE ledger_entries ADD COLUMN refusal TEXT;
