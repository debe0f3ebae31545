-- The country that issued the identity document, as the ID provider read it (issue 19 item
-- 2, ADR 86): on the check that reported it, and on the player once a check with one came
-- back verified. The risk features' KYC country is the player's `kyc_country` when set.
ALTER TABLE kyc_checks ADD COLUMN document_country TEXT;
ALTER TABLE players ADD COLUMN kyc_country TEXT;
