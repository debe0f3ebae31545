-- The routing document (rules, switches, decline classes, commissions), one row per version:
-- every change is a new row naming who made it, so the history is the audit (ADR 47). Nodes
-- read the newest version number at most once a second and load a newer document.
CREATE TABLE routing_versions (
    version INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT,
    created_at_ms INTEGER NOT NULL
);

-- The router's decision on a payment and its attempts (JSON), written with the payment.
ALTER TABLE payments ADD COLUMN routing TEXT;
