-- The card that paid a deposit, as the provider reported it (Stripe's `charge.succeeded`,
-- Adyen's authorisation `additionalData`; issue 19 item 2, ADR 84): never the number, only
-- the issuing country, the scheme and the last four digits. NULL until a provider says.
-- The risk feature `card_countries_30d` counts a player's distinct countries through
-- `payments_by_player`.
ALTER TABLE payments ADD COLUMN card_country TEXT;
ALTER TABLE payments ADD COLUMN card_brand TEXT;
ALTER TABLE payments ADD COLUMN card_last4 TEXT;
