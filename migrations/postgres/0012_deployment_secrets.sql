-- Secrets every node of one deployment shares, made once by the first node that needs one
-- (ADR 0034): `payment_ids` derives a deposit's payment id from its Idempotency-Key, so that
-- two attempts with one key present the same id to the provider on any node, while the id
-- stays unguessable to whoever knows the key.
CREATE TABLE deployment_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
