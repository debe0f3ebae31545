//! The routing document's versions: each change is a new row naming who made it and why, so
//! the history is the audit trail, and a node knows a newer document exists by one small read
//! of the newest version number.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Store, StoreError};

/// One stored version of the routing document.
pub use crate::versions::DocumentVersion as RoutingVersion;

/// The stored version is not the one the writer based its change on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the routing document is at version {current:?}, not the one this change was based on")]
pub struct VersionConflict {
    /// The newest stored version, if any.
    pub current: Option<i64>,
}

use crate::versions::{version_from_row as from_row, VERSION_COLUMNS as COLUMNS};

impl Store {
    /// The newest version number, `None` before the first.
    pub async fn routing_version_number(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS version FROM routing_versions")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get("version")?)
    }

    /// The newest version, `None` before the first.
    pub async fn latest_routing(&self) -> Result<Option<RoutingVersion>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM routing_versions ORDER BY version DESC LIMIT 1");
        let row = sqlx::query(&sql).fetch_optional(self.reader()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Stores `document` as the version after `based_on` (`None`: the first). Two writers
    /// based on one version: the second is refused with the current version, so no change
    /// is lost unseen.
    pub async fn insert_routing_version(
        &self,
        based_on: Option<i64>,
        document: &str,
        actor: &str,
        note: Option<&str>,
    ) -> Result<Result<RoutingVersion, VersionConflict>, StoreError> {
        let Some(version) = based_on.unwrap_or(0).checked_add(1) else {
            let current = self.routing_version_number().await?;
            return Ok(Err(VersionConflict { current }));
        };
        let stored = RoutingVersion {
            version,
            document: document.to_string(),
            actor: actor.to_string(),
            note: note.map(str::to_string),
            created_at_ms: now_ms(),
        };
        let sql = format!("INSERT INTO routing_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)");
        let inserted = sqlx::query(&sql)
            .bind(stored.version)
            .bind(&stored.document)
            .bind(&stored.actor)
            .bind(&stored.note)
            .bind(stored.created_at_ms)
            .execute(self.autocommit())
            .await;
        match inserted {
            Ok(_) => Ok(Ok(stored)),
            Err(error) => {
                let error = StoreError::from(error);
                if !crate::is_unique_violation(&error) {
                    return Err(error);
                }
                let current = self.routing_version_number().await?;
                Ok(Err(VersionConflict { current }))
            }
        }
    }

    /// Versions older than `before` (all when `None`), newest first, at most `limit`.
    pub async fn routing_history(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RoutingVersion>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM routing_versions WHERE version < $1 ORDER BY version DESC \
             LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(from_row).collect()
    }
}

/// Statuses a deposit ends in, for the success-rate figures; the first four mean the player
/// paid.
const FINISHED_STATUSES: &str = "'captured', 'partially_refunded', 'refunded', 'charged_back', \
     'declined', 'failed', 'cancelled', 'expired'";

/// How many deposits of one kind finished in one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedCount {
    /// What is counted: `(provider, method, country)` or `(arm, "", "")`.
    pub key: (String, String, String),
    /// The payment status they ended in.
    pub status: String,
    pub count: i64,
}

impl Store {
    /// Deposits that finished since `since_ms`, by provider account, method, country and
    /// final status (all nodes' traffic: the success-rate mode's figures). The range on the
    /// status index's `updated_at_ms` keeps it off the whole table.
    pub async fn finished_deposits_by_account(
        &self,
        since_ms: i64,
    ) -> Result<Vec<FinishedCount>, StoreError> {
        let sql = format!(
            "SELECT provider, method, country, status, COUNT(*) AS n FROM payments \
             WHERE status IN ({FINISHED_STATUSES}) AND updated_at_ms >= $1 \
             GROUP BY provider, method, country, status"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(FinishedCount {
                    key: (
                        row.try_get("provider")?,
                        row.try_get("method")?,
                        row.try_get("country")?,
                    ),
                    status: row.try_get("status")?,
                    count: row.try_get("n")?,
                })
            })
            .collect()
    }

    /// Deposits routed in the success-rate mode that finished since `since_ms`, by arm and
    /// final status (the uplift report).
    pub async fn finished_deposits_by_arm(
        &self,
        since_ms: i64,
    ) -> Result<Vec<FinishedCount>, StoreError> {
        let sql = format!(
            "SELECT routing_arm, status, COUNT(*) AS n FROM payments \
             WHERE status IN ({FINISHED_STATUSES}) AND updated_at_ms >= $1 \
             AND routing_arm IS NOT NULL GROUP BY routing_arm, status"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row: &AnyRow| {
                Ok(FinishedCount {
                    key: (row.try_get("routing_arm")?, String::new(), String::new()),
                    status: row.try_get("status")?,
                    count: row.try_get("n")?,
                })
            })
            .collect()
    }
}
