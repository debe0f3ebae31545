-- 3-D Secure for direct acquiring (issue 20 item 4, ADR 67): the outcome of the cardholder
-- authentication Kassa's own 3DS Server ran for a card-page deposit, one row per payment,
-- written in the transaction that records the authorization's answer (or the decline without
-- one). The authentication value (CAVV) is not here: it proves the cardholder and goes only
-- into the authorization message. Nor is the card number.
CREATE TABLE threeds_outcomes (
    payment_id TEXT PRIMARY KEY,
    -- EMVCo transStatus of the final result: Y, A, N, R or U.
    trans_status TEXT NOT NULL,
    -- The electronic commerce indicator (with Y and A), e.g. 05.
    eci TEXT,
    three_ds_server_trans_id TEXT NOT NULL,
    acs_trans_id TEXT NOT NULL,
    ds_trans_id TEXT NOT NULL,
    -- 1 when the cardholder was challenged.
    challenged BIGINT NOT NULL CHECK (challenged IN (0, 1)),
    created_at_ms BIGINT NOT NULL
);
