-- Outbound webhooks to the operator (issue 18, items 4-7; ADR 46).
--
-- Every outbox event gets a stable id (evt_…), the `webhook-id` the operator dedupes on.
-- Events written before this migration get one made from their row id.
ALTER TABLE outbox ADD COLUMN event_id TEXT;
UPDATE outbox SET event_id = 'evt_outbox_' || CAST(id AS TEXT) WHERE event_id IS NULL;
CREATE UNIQUE INDEX outbox_event_id ON outbox (event_id);

-- The operator's endpoints. The signing secret is stored as written (`whsec_…`), not
-- encrypted: Kassa has no key facility to encrypt it under yet (see the ADR). After a
-- rotation the previous secret signs alongside until previous_secret_until_ms.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    -- JSON array of event-type filters: `*`, `payment.*`, `payout.paid`.
    event_types TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    -- Why it was disabled by Kassa (`gone`, `failing`); NULL when enabled or disabled by hand.
    disabled_reason TEXT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until_ms INTEGER,
    -- The first failed attempt since the last success; NULL while it succeeds.
    failing_since_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at_ms, id);

-- One event for one endpoint: its delivery state. A delivery job (kind webhook.deliver,
-- dedupe key endpoint:event) carries it; this row says what became of it.
CREATE TABLE webhook_messages (
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- `pending` (a job will try), `delivered`, `failed` (the schedule ran out or the
    -- endpoint was disabled).
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_messages_failed ON webhook_messages (endpoint_id, status, updated_at_ms);

-- Every delivery attempt, for the operator to read (GET /v1/webhook-endpoints/{id}/attempts).
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    -- The HTTP status answered; NULL when no answer came (timeout, refused connection).
    http_status INTEGER,
    latency_ms INTEGER NOT NULL,
    -- At most 1 KiB of the answer's body.
    response_excerpt TEXT,
    error TEXT,
    attempted_at_ms INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
