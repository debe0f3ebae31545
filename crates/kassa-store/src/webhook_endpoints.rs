//! Outbound webhooks on disk: the operator's endpoints (with their signing secrets), one
//! message per (endpoint, event) with its delivery state, and every delivery attempt.

use secrecy::SecretString;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, placeholders, Conn, Store, StoreError};

/// An operator's endpoint as stored.
#[derive(Clone, Debug)]
pub struct WebhookEndpointRecord {
    /// `we_…`.
    pub id: String,
    pub merchant_id: String,
    pub url: String,
    /// Event-type filters: `*`, `payment.*`, `payout.paid`.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Why Kassa disabled it (`gone`, `failing`); `None` when enabled or disabled by hand.
    pub disabled_reason: Option<String>,
    /// `whsec_…`; `Debug` shows it redacted.
    pub secret: SecretString,
    /// The secret before the last rotation, still signing until `previous_secret_until_ms`.
    pub previous_secret: Option<SecretString>,
    pub previous_secret_until_ms: Option<i64>,
    /// The first failed attempt since the last success.
    pub failing_since_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What became of one event for one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    /// A delivery job will try (again).
    Pending,
    Delivered,
    /// The retry schedule ran out, or the endpoint was disabled or deleted.
    Failed,
}

impl MessageStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Failed => "failed",
        }
    }
}

/// One delivery attempt, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// Increases with every attempt; the page cursor.
    pub id: i64,
    pub endpoint_id: String,
    pub event_id: String,
    /// 1 for the first try of this message.
    pub attempt: i64,
    /// `None` when no answer came.
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    /// At most 1 KiB of the answer's body.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub attempted_at_ms: i64,
}

const ENDPOINT_COLUMNS: &str = "id, merchant_id, url, event_types, description, enabled, \
     disabled_reason, secret, previous_secret, previous_secret_until_ms, failing_since_ms, \
     created_at_ms, updated_at_ms";

const ATTEMPT_COLUMNS: &str = "id, endpoint_id, event_id, attempt, http_status, latency_ms, \
     response_excerpt, error, attempted_at_ms";

fn endpoint_from_row(row: &AnyRow) -> Result<WebhookEndpointRecord, StoreError> {
    let event_types: String = row.try_get("event_types")?;
    let event_types = serde_json::from_str(&event_types)
        .map_err(|e| StoreError::Corrupt(format!("webhook endpoint event_types: {e}")))?;
    let enabled: i64 = row.try_get("enabled")?;
    let secret: String = row.try_get("secret")?;
    let previous: Option<String> = row.try_get("previous_secret")?;
    Ok(WebhookEndpointRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        url: row.try_get("url")?,
        event_types,
        description: row.try_get("description")?,
        enabled: enabled == 1,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: SecretString::from(secret),
        previous_secret: previous.map(SecretString::from),
        previous_secret_until_ms: row.try_get("previous_secret_until_ms")?,
        failing_since_ms: row.try_get("failing_since_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<WebhookAttempt, StoreError> {
    Ok(WebhookAttempt {
        id: row.try_get("id")?,
        endpoint_id: row.try_get("endpoint_id")?,
        event_id: row.try_get("event_id")?,
        attempt: row.try_get("attempt")?,
        http_status: row.try_get("http_status")?,
        latency_ms: row.try_get("latency_ms")?,
        response_excerpt: row.try_get("response_excerpt")?,
        error: row.try_get("error")?,
        attempted_at_ms: row.try_get("attempted_at_ms")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds, in column order from `url` to `failing_since_ms`, the fields a change may touch.
fn bind_changeable<'q>(query: AnyQuery<'q>, e: &'q WebhookEndpointRecord) -> AnyQuery<'q> {
    use secrecy::ExposeSecret;
    query
        .bind(&e.url)
        .bind(event_types_json(&e.event_types))
        .bind(&e.description)
        .bind(i64::from(e.enabled))
        .bind(&e.disabled_reason)
        .bind(e.secret.expose_secret())
        .bind(e.previous_secret.as_ref().map(|s| s.expose_secret()))
        .bind(e.previous_secret_until_ms)
        .bind(e.failing_since_ms)
}

fn event_types_json(event_types: &[String]) -> String {
    serde_json::Value::from(event_types.to_vec()).to_string()
}

impl Store {
    /// Stores a new endpoint.
    pub async fn insert_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpointRecord,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let query = sqlx::query(&sql)
            .bind(&endpoint.id)
            .bind(&endpoint.merchant_id);
        bind_changeable(query, endpoint)
            .bind(endpoint.created_at_ms)
            .bind(endpoint.updated_at_ms)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Writes every field of an existing endpoint of its merchant; `false` when it is gone.
    pub async fn update_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpointRecord,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, event_types = $4, description = $5, \
             enabled = $6, disabled_reason = $7, secret = $8, previous_secret = $9, \
             previous_secret_until_ms = $10, failing_since_ms = $11, updated_at_ms = $12 \
             WHERE id = $1 AND merchant_id = $2",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.merchant_id);
        let done = bind_changeable(query, endpoint)
            .bind(endpoint.updated_at_ms)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An endpoint by id, whoever's it is (the delivery worker's view).
    pub async fn webhook_endpoint(
        &self,
        endpoint_id: &str,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(endpoint_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// A merchant's endpoints, newest first, before the `(created_at_ms, id)` cursor.
    pub async fn list_webhook_endpoints(
        &self,
        merchant_id: &str,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        let (before_ms, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = $1 \
             AND (created_at_ms < $2 OR (created_at_ms = $2 AND id < $3)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Deletes a merchant's endpoint; `false` when there was none. Its messages and attempts
    /// stay for the record; pending deliveries find it gone and fail.
    pub async fn delete_webhook_endpoint(
        &self,
        merchant_id: &str,
        endpoint_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2")
            .bind(endpoint_id)
            .bind(merchant_id)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The enabled endpoints of these merchants, read on `conn` (the outbox publisher's
    /// transaction).
    pub async fn enabled_webhook_endpoints_in(
        &self,
        conn: &mut Conn,
        merchant_ids: &[&str],
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        if merchant_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE enabled = 1 \
             AND merchant_id IN ({}) ORDER BY id",
            placeholders(1, merchant_ids.len())
        );
        let mut query = sqlx::query(&sql);
        for merchant_id in merchant_ids {
            query = query.bind(*merchant_id);
        }
        let rows = query.fetch_all(conn).await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Records a message as pending on `conn` (a new one, or one replayed).
    pub async fn upsert_webhook_message_in(
        &self,
        conn: &mut Conn,
        endpoint_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhook_messages (endpoint_id, event_id, status, attempts, \
             created_at_ms, updated_at_ms) VALUES ($1, $2, 'pending', 0, $3, $3) \
             ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = 'pending', \
             updated_at_ms = $3",
        )
        .bind(endpoint_id)
        .bind(event_id)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Sets a message's status and attempt count.
    pub async fn set_webhook_message_status(
        &self,
        endpoint_id: &str,
        event_id: &str,
        status: MessageStatus,
        attempts: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_messages SET status = $1, attempts = $2, updated_at_ms = $3 \
             WHERE endpoint_id = $4 AND event_id = $5",
        )
        .bind(status.as_str())
        .bind(attempts)
        .bind(now_ms())
        .bind(endpoint_id)
        .bind(event_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Whether the endpoint has a message for this event, and its status.
    pub async fn webhook_message_status(
        &self,
        endpoint_id: &str,
        event_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT status FROM webhook_messages WHERE endpoint_id = $1 AND event_id = $2",
        )
        .bind(endpoint_id)
        .bind(event_id)
        .fetch_optional(self.reader())
        .await?)
    }

    /// Event ids of an endpoint's failed messages last changed at or after `since_ms`,
    /// oldest first, at most `limit`.
    pub async fn failed_webhook_messages_since(
        &self,
        endpoint_id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT event_id FROM webhook_messages WHERE endpoint_id = $1 AND status = 'failed' \
             AND updated_at_ms >= $2 ORDER BY updated_at_ms, event_id LIMIT $3",
        )
        .bind(endpoint_id)
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?)
    }

    /// Logs one delivery attempt.
    pub async fn insert_webhook_attempt(&self, a: &WebhookAttempt) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_attempts (endpoint_id, event_id, attempt, http_status, \
             latency_ms, response_excerpt, error, attempted_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.endpoint_id)
        .bind(&a.event_id)
        .bind(a.attempt)
        .bind(a.http_status)
        .bind(a.latency_ms)
        .bind(&a.response_excerpt)
        .bind(&a.error)
        .bind(a.attempted_at_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Deletes at most `batch_max` delivery attempts made before `before_ms`, oldest first;
    /// returns how many went.
    pub async fn purge_webhook_attempts(
        &self,
        before_ms: i64,
        batch_max: u32,
    ) -> Result<u64, StoreError> {
        self.delete_oldest("webhook_attempts", "attempted_at_ms", before_ms, batch_max)
            .await
    }

    /// An endpoint's attempts, newest first, with ids below `before_id`.
    pub async fn list_webhook_attempts(
        &self,
        endpoint_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(endpoint_id)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// After a delivered attempt: the endpoint is no longer failing.
    pub async fn webhook_endpoint_succeeded(&self, endpoint_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since_ms = NULL \
             WHERE id = $1 AND failing_since_ms IS NOT NULL",
        )
        .bind(endpoint_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// After a failed attempt at `at_ms`: returns since when the endpoint has been failing
    /// (`at_ms` for its first failure since a success), or `None` when it is gone.
    pub async fn webhook_endpoint_failed(
        &self,
        endpoint_id: &str,
        at_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE webhook_endpoints SET failing_since_ms = COALESCE(failing_since_ms, $1) \
             WHERE id = $2 RETURNING failing_since_ms",
        )
        .bind(at_ms)
        .bind(endpoint_id)
        .fetch_optional(self.writer())
        .await?)
    }

    /// Disables an enabled endpoint with `reason`, on `conn` inside the caller's transaction
    /// (which also writes the event saying so); `false` when it was not enabled.
    pub async fn disable_webhook_endpoint_in(
        &self,
        conn: &mut Conn,
        endpoint_id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at_ms = $2 \
             WHERE id = $3 AND enabled = 1",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(endpoint_id)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
