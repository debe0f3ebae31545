-- Card deposits through Kassa's own card page (issue 20): one row per payment whose card was
-- submitted, inserted before the acquirer hears of it, so a second submission (a double
-- click, two tabs, two nodes) can never send a second purchase. No card data is stored here:
-- only the payment id and when.
CREATE TABLE card_submissions (
    payment_id TEXT PRIMARY KEY,
    submitted_at_ms BIGINT NOT NULL
);
