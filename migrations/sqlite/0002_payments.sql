-- Deposits (payments), their history, refunds, inbound provider webhooks and the outbox.

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    player_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_reference TEXT,
    method TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    refunded_minor INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    return_url TEXT NOT NULL,
    redirect_url TEXT,
    country TEXT NOT NULL,
    device TEXT,
    ip TEXT,
    session_id TEXT,
    failure_reason TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    FOREIGN KEY (merchant_id, player_id) REFERENCES players (merchant_id, player_id)
);
CREATE INDEX payments_by_player ON payments (merchant_id, player_id, created_at_ms);
CREATE INDEX payments_by_status ON payments (status, updated_at_ms);
CREATE UNIQUE INDEX payments_by_provider_reference ON payments (provider, provider_reference);

-- Every event a payment saw, applied or ignored: the audit trail of its state machine.
CREATE TABLE payment_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT,
    detail TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX payment_events_by_payment ON payment_events (payment_id, id);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    payment_id TEXT NOT NULL REFERENCES payments (id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_reason TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id);

-- The delivery log: every inbound provider webhook, whatever became of it.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    event_id TEXT,
    payment_id TEXT,
    headers TEXT NOT NULL,
    raw_body TEXT NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at_ms);
CREATE INDEX webhook_deliveries_by_payment ON webhook_deliveries (payment_id);

-- Events already processed, written in the transaction of their effect: the dedupe key.
CREATE TABLE webhook_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- Events for the operator (webhooks, streams), written with the change they describe.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    merchant_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    published_at_ms INTEGER
);
CREATE INDEX outbox_unpublished ON outbox (published_at_ms, id);
