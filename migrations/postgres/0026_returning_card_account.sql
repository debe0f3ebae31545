-- A returning card prefers the provider account that approved it (issue 16 item 4): the
-- acquirer account whose approval last took this saved card. NULL until one did.
ALTER TABLE vault_cards ADD COLUMN approved_account TEXT;
